/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Binding `moonstack.native.dcap` (dcap.h):
 *
 *   local dcap = require('moonstack.native.dcap')
 *   local coll, err, code = dcap.collateral(json_text_or_fields)   -- Collateral userdata
 *   coll:info()                 -- { tee, fmspc, tcb_info_next_update, ..., not_before, not_after }
 *   local v = dcap.verifier({ root_ca = der_or_pem, simulator = bool, allow_debug = bool,
 *                             allow_service_td = bool })           -- Verifier userdata
 *   local report, err, code = v:verify(quote, coll, now)         -- report table (hex fields)
 *   v:root_ca(), v:simulated(), v:close(), coll:close()
 *   dcap.intel_root_ca(), dcap.INTEL_ROOT_CA_SHA256, dcap.STATUSES
 *
 * Failures return nil, "CODE: message", CODE (dcap.h's codes). Misuse raises: wrong types,
 * unknown option or field names, a negative time, a closed object.
 */
#include <stdlib.h>
#include <string.h>

#include "dcap/dcap.h"
#include "moonstack/rt.h"

#define COLL_CLASS     "moonstack.dcap.Collateral"
#define VERIFIER_CLASS "moonstack.dcap.Verifier"

struct l_coll {
	struct dcap_collateral *c;
};

struct l_verifier {
	struct dcap_verifier *v;
};

static int fail(lua_State *L, const struct dcap_error *err)
{
	return rt_push_fail(L, err->code ? err->code : "EINVAL", "%s", err->msg);
}

/* ---- collateral ---- */

struct field {
	const char *name;
	bool hex;
	size_t data, len;
};

#define FIELD(n, hex)                                                   \
	{                                                               \
#n, hex, offsetof(struct dcap_collateral_input, n),     \
			offsetof(struct dcap_collateral_input, n##_len) \
	}

static const struct field fields[] = {
	FIELD(pck_crl_issuer_chain, false),
	FIELD(root_ca_crl, true),
	FIELD(pck_crl, true),
	FIELD(tcb_info_issuer_chain, false),
	FIELD(tcb_info, false),
	FIELD(tcb_info_signature, true),
	FIELD(qe_identity_issuer_chain, false),
	FIELD(qe_identity, false),
	FIELD(qe_identity_signature, true),
	FIELD(pck_certificate_chain, false),
};

static int nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
		return (c | 0x20) - 'a' + 10;
	return -1;
}

/* Fields table -> input: strings as they are, hex fields decoded into a scratch userdata. */
static int collateral_from_table(lua_State *L, struct dcap_collateral_input *in)
{
	memset(in, 0, sizeof(*in));
	lua_pushnil(L);
	while (lua_next(L, 1)) {
		const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
		const struct field *f = NULL;
		for (size_t i = 0; key && i < sizeof(fields) / sizeof(fields[0]); i++)
			if (strcmp(key, fields[i].name) == 0)
				f = &fields[i];
		if (!f)
			luaL_error(L, "dcap.collateral: unknown field %s",
				   key ? key : luaL_typename(L, -2));
		lua_pop(L, 1);
	}
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		const struct field *f = &fields[i];
		lua_getfield(L, 1, f->name);
		if (lua_isnil(L, -1)) {
			lua_pop(L, 1);
			continue;
		}
		if (lua_type(L, -1) != LUA_TSTRING)
			luaL_error(L, "dcap.collateral: field %s must be a string", f->name);
		size_t n;
		const char *s = lua_tolstring(L, -1, &n);
		char *p = (char *)s;
		if (f->hex) {
			if (n % 2)
				return rt_push_fail(L, "ECOLLATERAL", "collateral: %s is not hex",
						    f->name);
			uint8_t *out = lua_newuserdata(L, n / 2 + 1);
			for (size_t k = 0; k < n / 2; k++) {
				int hi = nibble(s[2 * k]), lo = nibble(s[2 * k + 1]);
				if (hi < 0 || lo < 0)
					return rt_push_fail(L, "ECOLLATERAL",
							    "collateral: %s is not hex", f->name);
				out[k] = (uint8_t)(hi << 4 | lo);
			}
			n /= 2;
			p = (char *)out;
			lua_replace(L, -2);
		}
		/* Keep the value alive in the registry-free way: leave it on the stack. */
		memcpy((char *)in + f->data, &p, sizeof(p));
		memcpy((char *)in + f->len, &n, sizeof(n));
	}
	return 0;
}

static int l_collateral(lua_State *L)
{
	struct dcap_error err = { 0 };
	struct dcap_collateral *c = NULL;
	int rc;

	if (lua_type(L, 1) == LUA_TSTRING) {
		size_t len;
		const char *json = lua_tolstring(L, 1, &len);
		rc = dcap_collateral_from_json(json, len, &c, &err);
	} else {
		luaL_checktype(L, 1, LUA_TTABLE);
		struct dcap_collateral_input in;
		int top = lua_gettop(L);
		int pushed = collateral_from_table(L, &in);
		if (pushed)
			return pushed;
		rc = dcap_collateral_new(&in, &c, &err);
		lua_settop(L, top);
	}
	if (rc)
		return fail(L, &err);
	struct l_coll *u = lua_newuserdata(L, sizeof(*u));
	u->c = c;
	luaL_getmetatable(L, COLL_CLASS);
	lua_setmetatable(L, -2);
	return 1;
}

static struct dcap_collateral *check_coll(lua_State *L, int idx, const char *fn)
{
	struct l_coll *u = luaL_checkudata(L, idx, COLL_CLASS);
	if (!u->c)
		luaL_error(L, "%s: the collateral is closed", fn);
	return u->c;
}

static void set_hex(lua_State *L, const char *key, const uint8_t *p, size_t n)
{
	char hex[2 * 64 + 1];
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		hex[2 * i] = digits[p[i] >> 4];
		hex[2 * i + 1] = digits[p[i] & 15];
	}
	lua_pushlstring(L, hex, 2 * n);
	lua_setfield(L, -2, key);
}

static void set_int(lua_State *L, const char *key, int64_t v)
{
	lua_pushnumber(L, (lua_Number)v);
	lua_setfield(L, -2, key);
}

static void set_str(lua_State *L, const char *key, const char *v)
{
	lua_pushstring(L, v);
	lua_setfield(L, -2, key);
}

static int l_coll_info(lua_State *L)
{
	struct dcap_collateral_info i;
	dcap_collateral_get_info(check_coll(L, 1, "collateral:info"), &i);
	lua_createtable(L, 0, 16);
	set_str(L, "tee", i.tee);
	set_int(L, "tcb_info_version", i.tcb_info_version);
	set_hex(L, "fmspc", i.fmspc, 6);
	set_hex(L, "pce_id", i.pce_id, 2);
	set_int(L, "tcb_evaluation_data_number", i.tcb_evaluation_data_number);
	set_int(L, "tcb_info_issue_date", i.tcb_info_issue_date);
	set_int(L, "tcb_info_next_update", i.tcb_info_next_update);
	set_str(L, "qe_identity_id", i.qe_identity_id);
	set_int(L, "qe_identity_issue_date", i.qe_identity_issue_date);
	set_int(L, "qe_identity_next_update", i.qe_identity_next_update);
	set_int(L, "root_ca_crl_this_update", i.root_ca_crl_this_update);
	set_int(L, "root_ca_crl_next_update", i.root_ca_crl_next_update);
	set_int(L, "pck_crl_this_update", i.pck_crl_this_update);
	set_int(L, "pck_crl_next_update", i.pck_crl_next_update);
	set_int(L, "not_before", i.not_before);
	set_int(L, "not_after", i.not_after);
	return 1;
}

static int l_coll_close(lua_State *L)
{
	struct l_coll *u = luaL_checkudata(L, 1, COLL_CLASS);
	dcap_collateral_free(u->c);
	u->c = NULL;
	return 0;
}

static int l_coll_tostring(lua_State *L)
{
	struct l_coll *u = luaL_checkudata(L, 1, COLL_CLASS);
	if (!u->c) {
		lua_pushfstring(L, "%s (closed)", COLL_CLASS);
		return 1;
	}
	struct dcap_collateral_info i;
	char fmspc[13];
	dcap_collateral_get_info(u->c, &i);
	static const char digits[] = "0123456789abcdef";
	for (int k = 0; k < 6; k++) {
		fmspc[2 * k] = digits[i.fmspc[k] >> 4];
		fmspc[2 * k + 1] = digits[i.fmspc[k] & 15];
	}
	fmspc[12] = '\0';
	lua_pushfstring(L, "%s (%s, FMSPC %s)", COLL_CLASS, i.tee, fmspc);
	return 1;
}

/* ---- verifier ---- */

static bool opt_bool(lua_State *L, const char *key)
{
	lua_getfield(L, 1, key);
	if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
		luaL_error(L, "dcap.verifier: option %s must be a boolean", key);
	bool v = lua_toboolean(L, -1);
	lua_pop(L, 1);
	return v;
}

static int l_verifier(lua_State *L)
{
	static const char *const known[] = { "root_ca", "simulator", "allow_debug",
					     "allow_service_td", NULL };
	struct dcap_verifier_opts o = { 0 };
	struct dcap_error err = { 0 };

	if (lua_isnoneornil(L, 1)) {
		lua_settop(L, 0);
		lua_newtable(L);
	}
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_pushnil(L);
	while (lua_next(L, 1)) {
		const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
		bool ok = false;
		for (int i = 0; key && known[i]; i++)
			ok |= strcmp(key, known[i]) == 0;
		if (!ok)
			luaL_error(L, "dcap.verifier: unknown option %s",
				   key ? key : luaL_typename(L, -2));
		lua_pop(L, 1);
	}
	lua_getfield(L, 1, "root_ca");
	if (!lua_isnil(L, -1)) {
		if (lua_type(L, -1) != LUA_TSTRING)
			luaL_error(L,
				   "dcap.verifier: option root_ca must be a string (DER or PEM)");
		o.root_ca = (const uint8_t *)lua_tolstring(L, -1, &o.root_ca_len);
	}
	o.simulator = opt_bool(L, "simulator");
	o.allow_debug = opt_bool(L, "allow_debug");
	o.allow_service_td = opt_bool(L, "allow_service_td");
	if (o.simulator && !o.root_ca)
		luaL_error(L, "dcap.verifier: simulator = true needs root_ca");
	struct l_verifier *u = lua_newuserdata(L, sizeof(*u));
	u->v = NULL;
	luaL_getmetatable(L, VERIFIER_CLASS);
	lua_setmetatable(L, -2);
	if (dcap_verifier_new(&o, &u->v, &err))
		return fail(L, &err);
	return 1;
}

static struct dcap_verifier *check_verifier(lua_State *L, const char *fn)
{
	struct l_verifier *u = luaL_checkudata(L, 1, VERIFIER_CLASS);
	if (!u->v)
		luaL_error(L, "verifier:%s: the verifier is closed", fn);
	return u->v;
}

static void push_report(lua_State *L, const struct dcap_report *r)
{
	lua_createtable(L, 0, 40);
	set_str(L, "status", dcap_tcb_status_name(r->status));
	set_str(L, "platform_status", dcap_tcb_status_name(r->platform_status));
	set_str(L, "qe_status", dcap_tcb_status_name(r->qe_status));
	lua_createtable(L, (int)r->n_advisory_ids, 0);
	for (size_t i = 0; i < r->n_advisory_ids; i++) {
		lua_pushstring(L, r->advisory_ids[i]);
		lua_rawseti(L, -2, (int)i + 1);
	}
	lua_setfield(L, -2, "advisory_ids");
	if (r->tcb_date)
		set_str(L, "tcb_date", r->tcb_date);
	set_str(L, "tee_type", r->tdx ? "TDX" : "SGX");
	set_int(L, "quote_version", r->quote_version);
	lua_pushboolean(L, r->simulated);
	lua_setfield(L, -2, "simulated");
	set_hex(L, "fmspc", r->fmspc, 6);
	set_hex(L, "pce_id", r->pce_id, 2);
	set_hex(L, "pck_cpu_svn", r->cpu_svn, 16);
	set_int(L, "pce_svn", r->pce_svn);
	set_hex(L, "ppid", r->ppid, 16);
	set_int(L, "qe_isv_svn", r->qe_isv_svn);
	set_hex(L, "report_data", r->report_data, 64);
	if (!r->tdx) {
		set_hex(L, "cpu_svn", r->cpu_svn_report, 16);
		set_int(L, "misc_select", r->misc_select);
		set_hex(L, "attributes", r->attributes, 16);
		set_hex(L, "mr_enclave", r->mr_enclave, 32);
		set_hex(L, "mr_signer", r->mr_signer, 32);
		set_int(L, "isv_prod_id", r->isv_prod_id);
		set_int(L, "isv_svn", r->isv_svn);
		return;
	}
	set_hex(L, "tee_tcb_svn", r->tee_tcb_svn, 16);
	set_hex(L, "mr_seam", r->mr_seam, 48);
	set_hex(L, "mr_signer_seam", r->mr_signer_seam, 48);
	set_hex(L, "seam_attributes", r->seam_attributes, 8);
	set_hex(L, "td_attributes", r->td_attributes, 8);
	set_hex(L, "xfam", r->xfam, 8);
	set_hex(L, "mrtd", r->mr_td, 48);
	set_hex(L, "mr_config_id", r->mr_config_id, 48);
	set_hex(L, "mr_owner", r->mr_owner, 48);
	set_hex(L, "mr_owner_config", r->mr_owner_config, 48);
	set_hex(L, "rtmr0", r->rtmr[0], 48);
	set_hex(L, "rtmr1", r->rtmr[1], 48);
	set_hex(L, "rtmr2", r->rtmr[2], 48);
	set_hex(L, "rtmr3", r->rtmr[3], 48);
	if (r->td15) {
		set_hex(L, "tee_tcb_svn2", r->tee_tcb_svn2, 16);
		set_hex(L, "mr_servicetd", r->mr_servicetd, 48);
	}
}

static int l_verify(lua_State *L)
{
	struct dcap_verifier *v = check_verifier(L, "verify");
	size_t len;
	const char *quote = luaL_checklstring(L, 2, &len);
	struct dcap_collateral *c = check_coll(L, 3, "verifier:verify");
	lua_Number now = luaL_checknumber(L, 4);
	luaL_argcheck(L, now >= 0 && now == (lua_Number)(int64_t)now, 4,
		      "now must be a non-negative integer (unix seconds)");
	struct dcap_report r;
	struct dcap_error err = { 0 };
	if (dcap_verify(v, (const uint8_t *)quote, len, c, (int64_t)now, &r, &err))
		return fail(L, &err);
	push_report(L, &r);
	return 1;
}

static int l_root_ca(lua_State *L)
{
	size_t len;
	const uint8_t *der = dcap_verifier_root(check_verifier(L, "root_ca"), &len);
	lua_pushlstring(L, (const char *)der, len);
	return 1;
}

static int l_simulated(lua_State *L)
{
	lua_pushboolean(L, dcap_verifier_simulated(check_verifier(L, "simulated")));
	return 1;
}

static int l_verifier_close(lua_State *L)
{
	struct l_verifier *u = luaL_checkudata(L, 1, VERIFIER_CLASS);
	dcap_verifier_free(u->v);
	u->v = NULL;
	return 0;
}

static int l_verifier_tostring(lua_State *L)
{
	struct l_verifier *u = luaL_checkudata(L, 1, VERIFIER_CLASS);
	if (!u->v)
		lua_pushfstring(L, "%s (closed)", VERIFIER_CLASS);
	else
		lua_pushfstring(L, "%s (%s root)", VERIFIER_CLASS,
				dcap_verifier_simulated(u->v) ? "simulator" : "Intel");
	return 1;
}

static int l_intel_root_ca(lua_State *L)
{
	size_t len;
	const uint8_t *der = dcap_intel_root_ca(&len);
	lua_pushlstring(L, (const char *)der, len);
	return 1;
}

static const luaL_Reg coll_methods[] = {
	{ "info", l_coll_info },
	{ "close", l_coll_close },
	{ NULL, NULL },
};

static const luaL_Reg coll_meta[] = {
	{ "__gc", l_coll_close },
	{ "__tostring", l_coll_tostring },
	{ NULL, NULL },
};

static const luaL_Reg verifier_methods[] = {
	{ "verify", l_verify },	       { "root_ca", l_root_ca }, { "simulated", l_simulated },
	{ "close", l_verifier_close }, { NULL, NULL },
};

static const luaL_Reg verifier_meta[] = {
	{ "__gc", l_verifier_close },
	{ "__tostring", l_verifier_tostring },
	{ NULL, NULL },
};

static const luaL_Reg functions[] = {
	{ "collateral", l_collateral },
	{ "verifier", l_verifier },
	{ "intel_root_ca", l_intel_root_ca },
	{ NULL, NULL },
};

int luaopen_moonstack_native_dcap(lua_State *L)
{
	rt_newclass(L, COLL_CLASS, coll_methods, coll_meta);
	rt_newclass(L, VERIFIER_CLASS, verifier_methods, verifier_meta);
	lua_newtable(L);
	luaL_register(L, NULL, functions);
	lua_pushstring(L, DCAP_INTEL_ROOT_SHA256);
	lua_setfield(L, -2, "INTEL_ROOT_CA_SHA256");
	lua_createtable(L, DCAP_REVOKED + 1, 0);
	for (int i = 0; i <= DCAP_REVOKED; i++) {
		lua_pushstring(L, dcap_tcb_status_name((enum dcap_tcb_status)i));
		lua_rawseti(L, -2, i + 1);
	}
	lua_setfield(L, -2, "STATUSES");
	return 1;
}
