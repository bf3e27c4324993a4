/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Binding `moonstack.native.sim`: a simulator state directory (sim.h) as a userdata object.
 *
 *   local sim = require('moonstack.native.sim')
 *   local s, err, code = sim.open(dir)        -- creates the directory and its PKI on first use
 *   s:create_cvm(name [, td [, replace]])     -- td: { mrtd = <48 bytes>, rtmr0 = ..., ... }
 *   s:cvm(name)                                -- { td_attributes, xfam, mrtd, mr_config_id,
 *                                              --   mr_owner, mr_owner_config, rtmr0..rtmr3 }
 *   s:extend_rtmr(name, index, digest48)       -- the new RTMR value
 *   s:quote(name, report_data)                 -- v4 quote bytes (report_data <= 64 bytes)
 *   s:collateral([now])                        -- collateral JSON (dcap-qvl format)
 *   s:root_ca()                                -- PEM, DER of the simulated root
 *   s:pck_chain(), s:attestation_key(), s:platform(), s:dir(), s:remove_cvm(name), s:close()
 *
 * Byte values cross as raw strings. Failures return nil, "CODE: message", CODE (EINVAL,
 * ENOENT, EEXIST, EIO, ECRYPTO, ESTATE, ENOMEM). Misuse (wrong types or lengths, an RTMR index
 * outside 0..3, report_data over 64 bytes, a closed object) raises.
 */
#include <stdlib.h>
#include <string.h>

#include "moonstack/rt.h"
#include "sim/sim.h"

#define SIM_CLASS "moonstack.sim.Sim"

struct l_sim {
	struct sim *s;
};

static struct sim *check_sim(lua_State *L, const char *fn)
{
	struct l_sim *u = luaL_checkudata(L, 1, SIM_CLASS);
	if (!u->s)
		luaL_error(L, "sim:%s: the simulator is closed", fn);
	return u->s;
}

static int fail(lua_State *L, struct sim *s, int rc)
{
	return rt_push_fail(L, sim_errcode(rc), "%s", sim_error(s));
}

static const char *check_name(lua_State *L, int idx)
{
	return luaL_checkstring(L, idx);
}

/* ---- TD values <-> tables ---- */

struct td_field {
	const char *name;
	size_t offset, size;
};

#define F(f)                                                                    \
	{                                                                       \
#f, offsetof(struct sim_td, f), sizeof(((struct sim_td *)0)->f) \
	}
static const struct td_field td_fields[] = {
	F(td_attributes),
	F(xfam),
	F(mrtd),
	F(mr_config_id),
	F(mr_owner),
	F(mr_owner_config),
	{ "rtmr0", offsetof(struct sim_td, rtmr[0]), SIM_MR_LEN },
	{ "rtmr1", offsetof(struct sim_td, rtmr[1]), SIM_MR_LEN },
	{ "rtmr2", offsetof(struct sim_td, rtmr[2]), SIM_MR_LEN },
	{ "rtmr3", offsetof(struct sim_td, rtmr[3]), SIM_MR_LEN },
};
#undef F

static void push_td(lua_State *L, const struct sim_td *td)
{
	lua_createtable(L, 0, sizeof(td_fields) / sizeof(td_fields[0]));
	for (size_t i = 0; i < sizeof(td_fields) / sizeof(td_fields[0]); i++) {
		lua_pushlstring(L, (const char *)td + td_fields[i].offset, td_fields[i].size);
		lua_setfield(L, -2, td_fields[i].name);
	}
}

/* Read the table at @p idx over the defaults; unknown keys and wrong lengths raise. */
static void check_td(lua_State *L, int idx, const char *fn, struct sim_td *td)
{
	sim_td_defaults(td);
	if (lua_isnoneornil(L, idx))
		return;
	luaL_checktype(L, idx, LUA_TTABLE);
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
		const struct td_field *f = NULL;
		for (size_t i = 0; key && i < sizeof(td_fields) / sizeof(td_fields[0]); i++)
			if (strcmp(key, td_fields[i].name) == 0)
				f = &td_fields[i];
		if (!f)
			luaL_error(L, "sim:%s: unknown TD field %s", fn,
				   key ? key : luaL_typename(L, -2));
		size_t len = 0;
		const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
		if (!v || len != f->size)
			luaL_error(L, "sim:%s: TD field %s must be a string of %d bytes", fn, key,
				   (int)f->size);
		memcpy((char *)td + f->offset, v, len);
		lua_pop(L, 1);
	}
}

/* ---- functions ---- */

static int l_open(lua_State *L)
{
	const char *dir = luaL_checkstring(L, 1);
	struct l_sim *u = lua_newuserdata(L, sizeof(*u));
	u->s = NULL;
	luaL_getmetatable(L, SIM_CLASS);
	lua_setmetatable(L, -2);
	char err[300];
	int rc = sim_open(dir, &u->s, err, sizeof(err));
	if (rc < 0)
		return rt_push_fail(L, sim_errcode(rc), "%s", err);
	return 1;
}

static int l_td_defaults(lua_State *L)
{
	struct sim_td td;
	sim_td_defaults(&td);
	push_td(L, &td);
	return 1;
}

static int l_close(lua_State *L)
{
	struct l_sim *u = luaL_checkudata(L, 1, SIM_CLASS);
	sim_close(u->s);
	u->s = NULL;
	return 0;
}

static int l_tostring(lua_State *L)
{
	struct l_sim *u = luaL_checkudata(L, 1, SIM_CLASS);
	if (u->s)
		lua_pushfstring(L, "%s (%s)", SIM_CLASS, sim_dir(u->s));
	else
		lua_pushfstring(L, "%s (closed)", SIM_CLASS);
	return 1;
}

static int l_dir(lua_State *L)
{
	lua_pushstring(L, sim_dir(check_sim(L, "dir")));
	return 1;
}

static int l_create_cvm(lua_State *L)
{
	struct sim *s = check_sim(L, "create_cvm");
	const char *name = check_name(L, 2);
	struct sim_td td;
	check_td(L, 3, "create_cvm", &td);
	int rc = sim_cvm_create(s, name, &td, lua_toboolean(L, 4));
	if (rc < 0)
		return fail(L, s, rc);
	lua_pushboolean(L, 1);
	return 1;
}

static int l_cvm(lua_State *L)
{
	struct sim *s = check_sim(L, "cvm");
	struct sim_td td;
	int rc = sim_cvm_load(s, check_name(L, 2), &td);
	if (rc < 0)
		return fail(L, s, rc);
	push_td(L, &td);
	return 1;
}

static int l_remove_cvm(lua_State *L)
{
	struct sim *s = check_sim(L, "remove_cvm");
	int rc = sim_cvm_remove(s, check_name(L, 2));
	if (rc < 0)
		return fail(L, s, rc);
	lua_pushboolean(L, 1);
	return 1;
}

static int l_extend_rtmr(lua_State *L)
{
	struct sim *s = check_sim(L, "extend_rtmr");
	const char *name = check_name(L, 2);
	lua_Integer index = luaL_checkinteger(L, 3);
	size_t len = 0;
	const char *digest = luaL_checklstring(L, 4, &len);
	luaL_argcheck(L, index >= 0 && index < SIM_RTMR_COUNT, 3, "RTMR index must be 0..3");
	luaL_argcheck(L, len == SIM_MR_LEN, 4, "digest must be 48 bytes");
	uint8_t out[SIM_MR_LEN];
	int rc = sim_extend_rtmr(s, name, (unsigned)index, (const uint8_t *)digest, out);
	if (rc < 0)
		return fail(L, s, rc);
	lua_pushlstring(L, (const char *)out, sizeof(out));
	return 1;
}

static int l_quote(lua_State *L)
{
	struct sim *s = check_sim(L, "quote");
	const char *name = check_name(L, 2);
	size_t len = 0;
	const char *rd = luaL_optlstring(L, 3, "", &len);
	luaL_argcheck(L, len <= SIM_REPORT_DATA_LEN, 3, "report_data is longer than 64 bytes");
	uint8_t *quote = NULL;
	size_t qlen = 0;
	int rc = sim_quote(s, name, (const uint8_t *)rd, len, &quote, &qlen);
	if (rc < 0)
		return fail(L, s, rc);
	lua_pushlstring(L, (const char *)quote, qlen);
	free(quote);
	return 1;
}

static int l_collateral(lua_State *L)
{
	struct sim *s = check_sim(L, "collateral");
	lua_Number now = luaL_optnumber(L, 2, (lua_Number)time(NULL));
	luaL_argcheck(L, now >= 0 && now < 253402300800.0, 2, "time out of range");
	struct sim_collateral c;
	int rc = sim_collateral(s, (time_t)now, &c);
	if (rc < 0)
		return fail(L, s, rc);
	char *json = NULL;
	size_t len = 0;
	rc = sim_collateral_json(&c, &json, &len);
	sim_collateral_free(&c);
	if (rc < 0)
		return rt_push_fail(L, "ENOMEM", "out of memory");
	lua_pushlstring(L, json, len);
	free(json);
	return 1;
}

static int l_root_ca(lua_State *L)
{
	struct sim *s = check_sim(L, "root_ca");
	size_t len = 0;
	const uint8_t *der = sim_root_ca_der(s, &len);
	lua_pushstring(L, sim_root_ca_pem(s));
	lua_pushlstring(L, (const char *)der, len);
	return 2;
}

static int l_pck_chain(lua_State *L)
{
	lua_pushstring(L, sim_pck_chain_pem(check_sim(L, "pck_chain")));
	return 1;
}

static int l_attestation_key(lua_State *L)
{
	uint8_t key[64];
	sim_attestation_key(check_sim(L, "attestation_key"), key);
	lua_pushlstring(L, (const char *)key, sizeof(key));
	return 1;
}

static void set_bytes(lua_State *L, const char *key, const uint8_t *p, size_t n)
{
	lua_pushlstring(L, (const char *)p, n);
	lua_setfield(L, -2, key);
}

static int l_platform(lua_State *L)
{
	const struct sim_platform *p = sim_platform(check_sim(L, "platform"));
	lua_createtable(L, 0, 17);
#define B(f) set_bytes(L, #f, p->f, sizeof(p->f))
	B(fmspc);
	B(pce_id);
	B(cpu_svn);
	B(ppid);
	B(platform_instance_id);
	B(qe_id);
	B(tee_tcb_svn);
	B(mr_seam);
	B(mr_signer_seam);
	B(seam_attributes);
	B(qe_attributes);
	B(qe_mr_enclave);
	B(qe_mr_signer);
#undef B
	lua_pushinteger(L, p->pce_svn);
	lua_setfield(L, -2, "pce_svn");
	lua_pushnumber(L, p->qe_misc_select);
	lua_setfield(L, -2, "qe_misc_select");
	lua_pushinteger(L, p->qe_isv_prod_id);
	lua_setfield(L, -2, "qe_isv_prod_id");
	lua_pushinteger(L, p->qe_isv_svn);
	lua_setfield(L, -2, "qe_isv_svn");
	return 1;
}

static const luaL_Reg methods[] = {
	{ "close", l_close },
	{ "dir", l_dir },
	{ "create_cvm", l_create_cvm },
	{ "cvm", l_cvm },
	{ "remove_cvm", l_remove_cvm },
	{ "extend_rtmr", l_extend_rtmr },
	{ "quote", l_quote },
	{ "collateral", l_collateral },
	{ "root_ca", l_root_ca },
	{ "pck_chain", l_pck_chain },
	{ "attestation_key", l_attestation_key },
	{ "platform", l_platform },
	{ NULL, NULL },
};

static const luaL_Reg meta[] = {
	{ "__gc", l_close },
	{ "__tostring", l_tostring },
	{ NULL, NULL },
};

static const luaL_Reg functions[] = {
	{ "open", l_open },
	{ "td_defaults", l_td_defaults },
	{ NULL, NULL },
};

int luaopen_moonstack_native_sim(lua_State *L)
{
	rt_newclass(L, SIM_CLASS, methods, meta);
	lua_newtable(L);
	luaL_register(L, NULL, functions);
	lua_pushstring(L, SIM_ROOT_CA_CN);
	lua_setfield(L, -2, "ROOT_CA_CN");
	lua_pushinteger(L, SIM_RTMR_COUNT);
	lua_setfield(L, -2, "RTMR_COUNT");
	return 1;
}
