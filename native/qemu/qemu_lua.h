/* SPDX-License-Identifier: Apache-2.0 */
/* Internal to native/qemu: the parts of the binding `moonstack.native.qemu` in other files. */
#ifndef MOONSTACK_QEMU_LUA_H
#define MOONSTACK_QEMU_LUA_H

#include <lua.h>

/** Register the QMP connection class and add `qmp_connect` to the module table on top of the
 *  stack (qemu_lua_qmp.c). */
void qemu_lua_qmp_open(lua_State *L);

#endif
