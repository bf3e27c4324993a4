/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Binding `moonstack.native.qemu`: the launch command line and the probe's pieces (qemu.h);
 * the QMP client's binding is in qemu_lua_qmp.c.
 *
 *   local native = require('moonstack.native.qemu')
 *   native.argv(desc)                       -> { 'qemu-system-x86_64', '-accel', ... }
 *   native.mac_address(vm_id, nic [, prefix]) -> 'xx:xx:xx:xx:xx:xx' (nic counts from 0)
 *   native.probe_write_payload(path)        -> true      (the probe guest, 0600, O_EXCL)
 *   native.probe_argv(qemu, accel, kernel)  -> { ... }
 *   native.host_tdx([sysfs_root])           -> boolean
 *   native.PROBE_EXIT                       -> 85
 *
 * A launch description is checked field by field: unknown fields, wrong types and refused
 * values return nil, "EINVAL: <field>: <why>", "EINVAL" (indexes count from 1). Misuse (a
 * description that is not a table) raises.
 */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "moonstack/rt.h"
#include "qemu/qemu.h"
#include "qemu/qemu_check.h"
#include "qemu/qemu_lua.h"

#define ARGV_GUARD "moonstack.qemu.Argv"
#define FIELD_LEN  64

static int push_err(lua_State *L, const struct qemu_error *e)
{
	return rt_push_fail(L, e->code, "%s", e->msg);
}

/* ---- reading a description ---- */

struct rd {
	lua_State *L;
	struct qemu_error *err;
};

/* Push t[key] (raw) for the table at @p t. */
static int raw_field(lua_State *L, int t, const char *key)
{
	lua_pushstring(L, key);
	lua_rawget(L, t);
	return lua_type(L, -1);
}

static void field_name(char *out, const char *prefix, const char *key)
{
	snprintf(out, FIELD_LEN, "%s%s%s", prefix, *prefix ? "." : "", key);
}

/* Every key of the table at @p t is a string in @p allowed. */
static int check_keys(struct rd *r, int t, const char *prefix, const char *const *allowed)
{
	lua_State *L = r->L;
	lua_pushnil(L);
	while (lua_next(L, t)) {
		lua_pop(L, 1);
		char f[FIELD_LEN];
		if (lua_type(L, -1) != LUA_TSTRING) {
			lua_pop(L, 1);
			return qemu_bad(r->err, *prefix ? prefix : "desc",
					"has a key that is not a field name");
		}
		const char *k = lua_tostring(L, -1);
		bool ok = false;
		for (const char *const *a = allowed; *a && !ok; a++)
			ok = strcmp(k, *a) == 0;
		if (!ok) {
			field_name(f, prefix, k);
			lua_pop(L, 1);
			return qemu_bad(r->err, f, "unknown field");
		}
	}
	return 0;
}

/* A string field (nil: *out = NULL). The string stays reachable through the table. */
static int get_str(struct rd *r, int t, const char *prefix, const char *key, const char **out)
{
	char f[FIELD_LEN];
	int type = raw_field(r->L, t, key);
	size_t len = 0;
	*out = type == LUA_TSTRING ? lua_tolstring(r->L, -1, &len) : NULL;
	lua_pop(r->L, 1);
	if (type != LUA_TNIL && type != LUA_TSTRING) {
		field_name(f, prefix, key);
		return qemu_bad(r->err, f, "must be a string");
	}
	if (*out && strlen(*out) != len) {
		field_name(f, prefix, key);
		return qemu_bad(r->err, f, "contains a NUL byte");
	}
	return 0;
}

/* A non-negative integer field, at most @p max (nil: 0). */
static int get_uint(struct rd *r, int t, const char *prefix, const char *key, double max,
		    uint64_t *out)
{
	char f[FIELD_LEN];
	int type = raw_field(r->L, t, key);
	double v = type == LUA_TNUMBER ? lua_tonumber(r->L, -1) : 0;
	lua_pop(r->L, 1);
	*out = 0;
	if (type == LUA_TNIL)
		return 0;
	field_name(f, prefix, key);
	if (type != LUA_TNUMBER || !(v >= 0 && v <= max) || v != floor(v)) // NaN fails too
		return qemu_bad(r->err, f, "must be an integer in 0..%.0f", max);
	*out = (uint64_t)v;
	return 0;
}

static int get_u32(struct rd *r, int t, const char *prefix, const char *key, unsigned *out)
{
	uint64_t v;
	int rc = get_uint(r, t, prefix, key, 4294967295.0, &v);
	*out = (unsigned)v;
	return rc;
}

static int get_bool(struct rd *r, int t, const char *prefix, const char *key, bool *out)
{
	char f[FIELD_LEN];
	int type = raw_field(r->L, t, key);
	*out = lua_toboolean(r->L, -1);
	lua_pop(r->L, 1);
	if (type != LUA_TNIL && type != LUA_TBOOLEAN) {
		field_name(f, prefix, key);
		return qemu_bad(r->err, f, "must be a boolean");
	}
	return 0;
}

/* An array field: pushes it (or nothing when nil) and sets *n; refuses more than @p max. */
static int get_array(struct rd *r, int t, const char *key, size_t max, size_t *n, bool *pushed)
{
	lua_State *L = r->L;
	*n = 0;
	*pushed = false;
	int type = raw_field(L, t, key);
	if (type == LUA_TNIL) {
		lua_pop(L, 1);
		return 0;
	}
	if (type != LUA_TTABLE) {
		lua_pop(L, 1);
		return qemu_bad(r->err, key, "must be an array");
	}
	size_t len = lua_objlen(L, -1), count = 0;
	int a = lua_gettop(L);
	lua_pushnil(L);
	while (lua_next(L, a)) {
		lua_pop(L, 1);
		double k = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
		if (k < 1 || k > (double)len || k != (double)(size_t)k) {
			lua_pop(L, 2);
			return qemu_bad(r->err, key, "must be an array (keys 1..n)");
		}
		count++;
	}
	if (count != len) {
		lua_pop(L, 1);
		return qemu_bad(r->err, key, "must be an array (keys 1..n)");
	}
	if (len > max) {
		lua_pop(L, 1);
		return qemu_bad(r->err, key, "more than %zu", max);
	}
	*n = len;
	*pushed = true;
	return 0;
}

/* Element @p i (from 1) of the array at @p a, which must be a table; pushes it. */
static int get_elem_table(struct rd *r, int a, const char *key, size_t i)
{
	lua_rawgeti(r->L, a, (int)i);
	if (!lua_istable(r->L, -1)) {
		char f[FIELD_LEN];
		snprintf(f, sizeof(f), "%s[%zu]", key, i);
		lua_pop(r->L, 1);
		return qemu_bad(r->err, f, "must be a table");
	}
	return 0;
}

static int read_share(struct rd *r, int t, struct qemu_share *s)
{
	static const char *const keys[] = { "mode",	      "path",  "readonly",
					    "security_model", "label", NULL };
	lua_State *L = r->L;
	int type = raw_field(L, t, "share");
	if (type == LUA_TNIL) {
		lua_pop(L, 1);
		return 0;
	}
	if (type != LUA_TTABLE) {
		lua_pop(L, 1);
		return qemu_bad(r->err, "share", "must be a table");
	}
	int st = lua_gettop(L);
	const char *mode = NULL;
	int rc;
	if ((rc = check_keys(r, st, "share", keys)) ||
	    (rc = get_str(r, st, "share", "mode", &mode)) ||
	    (rc = get_str(r, st, "share", "path", &s->path)) ||
	    (rc = get_bool(r, st, "share", "readonly", &s->readonly)) ||
	    (rc = get_str(r, st, "share", "security_model", &s->security_model)) ||
	    (rc = get_str(r, st, "share", "label", &s->label))) {
		lua_pop(L, 1);
		return rc;
	}
	lua_pop(L, 1); // the strings stay reachable through desc.share
	if (!mode)
		s->mode = QEMU_SHARE_NONE;
	else if (strcmp(mode, "9p") == 0)
		s->mode = QEMU_SHARE_9P;
	else if (strcmp(mode, "vvfat") == 0)
		s->mode = QEMU_SHARE_VVFAT;
	else if (strcmp(mode, "vhd") == 0)
		s->mode = QEMU_SHARE_VHD;
	else
		return qemu_bad(r->err, "share.mode", "must be 9p, vvfat or vhd");
	return 0;
}

static int read_nic(struct rd *r, int t, const char *p, void *item)
{
	struct qemu_nic *n = item;
	static const char *const keys[] = { "mode",   "restrict", "net", "dhcp_start",
					    "ifname", "bridge",	  "mac", NULL };
	const char *mode = NULL;
	int rc;
	if ((rc = check_keys(r, t, p, keys)) || (rc = get_str(r, t, p, "mode", &mode)) ||
	    (rc = get_bool(r, t, p, "restrict", &n->restrict_net)) ||
	    (rc = get_str(r, t, p, "net", &n->net)) ||
	    (rc = get_str(r, t, p, "dhcp_start", &n->dhcp_start)) ||
	    (rc = get_str(r, t, p, "ifname", &n->ifname)) ||
	    (rc = get_str(r, t, p, "bridge", &n->bridge)) ||
	    (rc = get_str(r, t, p, "mac", &n->mac)))
		return rc;
	char f[FIELD_LEN];
	field_name(f, p, "mode");
	if (!mode || strcmp(mode, "user") == 0)
		n->mode = QEMU_NIC_USER;
	else if (strcmp(mode, "tap") == 0)
		n->mode = QEMU_NIC_TAP;
	else if (strcmp(mode, "bridge") == 0)
		n->mode = QEMU_NIC_BRIDGE;
	else
		return qemu_bad(r->err, f, "must be user, tap or bridge");
	return 0;
}

static int read_port(struct rd *r, int t, const char *p, void *item)
{
	struct qemu_port *o = item;
	static const char *const keys[] = { "protocol", "host_address", "host_port", "vm_port",
					    NULL };
	int rc;
	if ((rc = check_keys(r, t, p, keys)) || (rc = get_str(r, t, p, "protocol", &o->protocol)) ||
	    (rc = get_str(r, t, p, "host_address", &o->host_address)) ||
	    (rc = get_u32(r, t, p, "host_port", &o->host_port)) ||
	    (rc = get_u32(r, t, p, "vm_port", &o->vm_port)))
		return rc;
	return 0;
}

static int read_serial_port(struct rd *r, int t, const char *p, void *item)
{
	struct qemu_serial_port *o = item;
	static const char *const keys[] = { "name", "path", "server", NULL };
	int rc;
	if ((rc = check_keys(r, t, p, keys)) || (rc = get_str(r, t, p, "name", &o->name)) ||
	    (rc = get_str(r, t, p, "path", &o->path)) ||
	    (rc = get_bool(r, t, p, "server", &o->server)))
		return rc;
	return 0;
}

/* An array of tables read with @p read into userdata-backed storage (left on the stack). */
static int read_list(struct rd *r, int t, const char *key, size_t max, size_t size,
		     int (*read)(struct rd *, int, const char *, void *), void **out, size_t *n)
{
	bool pushed;
	int rc = get_array(r, t, key, max, n, &pushed);
	*out = NULL;
	if (rc || !pushed)
		return rc;
	int a = lua_gettop(r->L);
	void *items = lua_newuserdata(r->L, *n ? *n * size : 1);
	memset(items, 0, *n ? *n * size : 1);
	lua_insert(r->L, a); // [..., items, array]
	for (size_t i = 1; i <= *n; i++) {
		if ((rc = get_elem_table(r, a + 1, key, i)))
			break;
		char p[FIELD_LEN];
		snprintf(p, sizeof(p), "%s[%zu]", key, i);
		rc = read(r, lua_gettop(r->L), p, (char *)items + (i - 1) * size);
		lua_pop(r->L, 1);
		if (rc)
			break;
	}
	lua_pop(r->L, 1); // the array; items stays on the stack until the call returns
	*out = items;
	return rc;
}

static int read_volumes(struct rd *r, int t, const char *const **out, size_t *n)
{
	bool pushed;
	int rc = get_array(r, t, "volumes", QEMU_MAX_VOLUMES, n, &pushed);
	*out = NULL;
	if (rc || !pushed)
		return rc;
	int a = lua_gettop(r->L);
	const char **v = lua_newuserdata(r->L, (*n + 1) * sizeof(*v));
	lua_insert(r->L, a);
	for (size_t i = 1; i <= *n && !rc; i++) {
		lua_rawgeti(r->L, a + 1, (int)i);
		size_t len = 0;
		v[i - 1] = lua_type(r->L, -1) == LUA_TSTRING ? lua_tolstring(r->L, -1, &len) : NULL;
		char f[FIELD_LEN];
		snprintf(f, sizeof(f), "volumes[%zu]", i);
		if (!v[i - 1])
			rc = qemu_bad(r->err, f, "must be a string");
		else if (strlen(v[i - 1]) != len)
			rc = qemu_bad(r->err, f, "contains a NUL byte");
		lua_pop(r->L, 1);
	}
	lua_pop(r->L, 1);
	*out = v;
	return rc;
}

/* "52:54:00", "525400" or "": 0..3 bytes. */
static int parse_prefix(struct qemu_error *err, const char *s, uint8_t out[3], size_t *len)
{
	char hex[8];
	size_t n = 0;
	*len = 0;
	for (const char *p = s; *p; p++) {
		if (*p == ':')
			continue;
		if (n >= 6)
			return qemu_bad(err, "mac_prefix", "at most 3 bytes");
		hex[n++] = *p;
	}
	if (n % 2 || rt_hex_decode(hex, n, out, n / 2) < 0)
		return qemu_bad(err, "mac_prefix", "must be hex bytes such as 52:54:00");
	*len = n / 2;
	return 0;
}

static int read_desc(struct rd *r, int t, struct qemu_vm *vm, uint8_t prefix[3])
{
	static const char *const keys[] = {
		"qemu",
		"accel",
		"machine",
		"cpu",
		"vm_id",
		"vcpu",
		"memory_mb",
		"kernel",
		"initrd",
		"cmdline",
		"bios",
		"rootfs",
		"data_disk",
		"data_disk_format",
		"volumes",
		"serial_log",
		"serial_pty",
		"qmp_socket",
		"share",
		"nics",
		"mac_prefix",
		"ports",
		"serial_ports",
		"vsock_cid",
		"mrconfigid",
		"qgs_port",
		"pci_hole64_size",
		"hotplug_off",
		"no_reboot",
		NULL,
	};
	const char *accel = NULL, *prefix_s = NULL;
	uint64_t hole = 0;
	int rc;
	if ((rc = check_keys(r, t, "", keys)) || (rc = get_str(r, t, "", "qemu", &vm->qemu)) ||
	    (rc = get_str(r, t, "", "accel", &accel)) ||
	    (rc = get_str(r, t, "", "machine", &vm->machine)) ||
	    (rc = get_str(r, t, "", "cpu", &vm->cpu)) ||
	    (rc = get_str(r, t, "", "vm_id", &vm->vm_id)) ||
	    (rc = get_u32(r, t, "", "vcpu", &vm->vcpu)) ||
	    (rc = get_u32(r, t, "", "memory_mb", &vm->memory_mb)) ||
	    (rc = get_str(r, t, "", "kernel", &vm->kernel)) ||
	    (rc = get_str(r, t, "", "initrd", &vm->initrd)) ||
	    (rc = get_str(r, t, "", "cmdline", &vm->cmdline)) ||
	    (rc = get_str(r, t, "", "bios", &vm->bios)) ||
	    (rc = get_str(r, t, "", "rootfs", &vm->rootfs)) ||
	    (rc = get_str(r, t, "", "data_disk", &vm->data_disk)) ||
	    (rc = get_str(r, t, "", "data_disk_format", &vm->data_disk_format)) ||
	    (rc = get_str(r, t, "", "serial_log", &vm->serial_log)) ||
	    (rc = get_str(r, t, "", "serial_pty", &vm->serial_pty)) ||
	    (rc = get_str(r, t, "", "qmp_socket", &vm->qmp_socket)) ||
	    (rc = get_str(r, t, "", "mac_prefix", &prefix_s)) ||
	    (rc = get_u32(r, t, "", "vsock_cid", &vm->vsock_cid)) ||
	    (rc = get_str(r, t, "", "mrconfigid", &vm->mrconfigid)) ||
	    (rc = get_u32(r, t, "", "qgs_port", &vm->qgs_port)) ||
	    (rc = get_uint(r, t, "", "pci_hole64_size", 9007199254740992.0, &hole)) ||
	    (rc = get_bool(r, t, "", "hotplug_off", &vm->hotplug_off)) ||
	    (rc = get_bool(r, t, "", "no_reboot", &vm->no_reboot)))
		return rc;
	vm->pci_hole64_size = hole;
	int a = accel ? qemu_accel_parse(accel) : -1;
	if (a < 0)
		return qemu_bad(r->err, "accel", "must be tdx, kvm or tcg");
	vm->accel = (enum qemu_accel)a;
	if (prefix_s && (rc = parse_prefix(r->err, prefix_s, prefix, &vm->mac_prefix_len)))
		return rc;
	vm->mac_prefix = prefix;
	void *items;
	if ((rc = read_share(r, t, &vm->share)) ||
	    (rc = read_volumes(r, t, &vm->volumes, &vm->nvolumes)))
		return rc;
	if ((rc = read_list(r, t, "nics", QEMU_MAX_NICS, sizeof(struct qemu_nic), read_nic, &items,
			    &vm->nnics)))
		return rc;
	vm->nics = items;
	if ((rc = read_list(r, t, "ports", QEMU_MAX_PORTS, sizeof(struct qemu_port), read_port,
			    &items, &vm->nports)))
		return rc;
	vm->ports = items;
	if ((rc = read_list(r, t, "serial_ports", QEMU_MAX_SERIAL_PORTS,
			    sizeof(struct qemu_serial_port), read_serial_port, &items,
			    &vm->nserial_ports)))
		return rc;
	vm->serial_ports = items;
	return 0;
}

/* String argument @p idx without embedded NUL (NULL when optional and absent). */
static const char *arg_str(lua_State *L, int idx, bool optional)
{
	if (optional && lua_isnoneornil(L, idx))
		return NULL;
	size_t len;
	const char *s = luaL_checklstring(L, idx, &len);
	if (strlen(s) != len)
		luaL_argerror(L, idx, "contains a NUL byte");
	return s;
}

/* ---- results ---- */

static int l_argv_gc(lua_State *L)
{
	qemu_argv_free(luaL_checkudata(L, 1, ARGV_GUARD));
	return 0;
}

/* Push @p a as a Lua array, freeing it even if pushing raises (a guard userdata owns it). */
static int push_argv(lua_State *L, struct qemu_argv *a)
{
	struct qemu_argv *g = lua_newuserdata(L, sizeof(*g));
	*g = *a;
	*a = (struct qemu_argv){ 0 };
	luaL_getmetatable(L, ARGV_GUARD);
	lua_setmetatable(L, -2);
	lua_createtable(L, (int)g->argc, 0);
	for (size_t i = 0; i < g->argc; i++) {
		lua_pushstring(L, g->argv[i]);
		lua_rawseti(L, -2, (int)i + 1);
	}
	qemu_argv_free(g);
	return 1;
}

/* native.argv(desc) */
static int l_argv(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	struct qemu_error e = { "EINVAL", "" };
	struct rd r = { .L = L, .err = &e };
	struct qemu_vm vm = { 0 };
	uint8_t prefix[3];
	if (read_desc(&r, 1, &vm, prefix) < 0)
		return push_err(L, &e);
	struct qemu_argv a;
	if (qemu_build_argv(&vm, &a, &e) < 0)
		return push_err(L, &e);
	return push_argv(L, &a);
}

/* native.mac_address(vm_id, nic [, prefix]) */
static int l_mac_address(lua_State *L)
{
	const char *id = arg_str(L, 1, false);
	lua_Integer nic = luaL_checkinteger(L, 2);
	const char *ps = arg_str(L, 3, true);
	luaL_argcheck(L, nic >= 0 && nic < 1 << 20, 2, "a NIC index from 0");
	struct qemu_error e;
	uint8_t prefix[3];
	size_t plen;
	if (parse_prefix(&e, ps ? ps : "", prefix, &plen) < 0)
		return push_err(L, &e);
	char mac[18];
	if (qemu_mac_address(id, prefix, plen, (unsigned)nic, mac) < 0)
		return rt_push_fail(L, "ENOMEM", "out of memory");
	lua_pushstring(L, mac);
	return 1;
}

/* native.probe_write_payload(path) */
static int l_probe_write_payload(lua_State *L)
{
	struct qemu_error e;
	if (qemu_probe_write_payload(arg_str(L, 1, false), &e) < 0)
		return push_err(L, &e);
	lua_pushboolean(L, 1);
	return 1;
}

/* native.probe_argv(qemu, accel, kernel) */
static int l_probe_argv(lua_State *L)
{
	struct qemu_error e;
	struct qemu_argv a;
	const char *qemu = arg_str(L, 1, false), *accel = arg_str(L, 2, false);
	if (qemu_probe_argv(qemu, accel, arg_str(L, 3, false), &a, &e) < 0)
		return push_err(L, &e);
	return push_argv(L, &a);
}

/* native.host_tdx([sysfs_root]) */
static int l_host_tdx(lua_State *L)
{
	struct qemu_error e;
	int rc = qemu_host_tdx(arg_str(L, 1, true), &e);
	if (rc < 0)
		return push_err(L, &e);
	lua_pushboolean(L, rc);
	return 1;
}

int luaopen_moonstack_native_qemu(lua_State *L)
{
	static const luaL_Reg guard_meta[] = {
		{ "__gc", l_argv_gc },
		{ NULL, NULL },
	};
	static const luaL_Reg none[] = { { NULL, NULL } };
	static const luaL_Reg funcs[] = {
		{ "argv", l_argv },
		{ "mac_address", l_mac_address },
		{ "probe_write_payload", l_probe_write_payload },
		{ "probe_argv", l_probe_argv },
		{ "host_tdx", l_host_tdx },
		{ NULL, NULL },
	};
	rt_newclass(L, ARGV_GUARD, none, guard_meta);
	lua_newtable(L);
	luaL_register(L, NULL, funcs);
	lua_pushinteger(L, QEMU_PROBE_EXIT);
	lua_setfield(L, -2, "PROBE_EXIT");
	qemu_lua_qmp_open(L);
	return 1;
}
