/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Binding `moonstack.native.tdx` (README.md in this folder is the contract). This file opens
 * the module and binds quote parsing and PEM chains; tdx_lua_eventlog.c and tdx_lua_guest.c
 * add the event log and device/service functions. Bytes cross as Lua strings (binary, not
 * hex). Misuse raises naming the function; failures return nil, "CODE: message", CODE.
 *
 *   local tdx = require('moonstack.native.tdx')
 *   local q, err, code = tdx.parse_quote(bytes)   -- q.report.rtmr0, q.pck_chain, ...
 *   local certs = tdx.parse_pem_chain(q.pck_chain) -- { {subject=, issuer=, sgx={fmspc=}}, ... }
 */
#include <stdlib.h>
#include <string.h>

#include "moonstack/rt.h"
#include "rt_natives.h"
#include "tdx/tdx_lua.h"

int tdx_lua_fail(lua_State *L, const struct tdx_error *err)
{
	const char *code = err->code ? err->code : "EIO";
	return rt_push_fail(L, code, "%s", err->msg);
}

const uint8_t *tdx_lua_check_bytes(lua_State *L, int idx, size_t len, const char *fn,
				   const char *what)
{
	size_t got;
	const char *s = lua_tolstring(L, idx, &got);

	if (lua_type(L, idx) != LUA_TSTRING || got != len)
		luaL_error(L, "tdx.%s: %s must be a %d-byte string", fn, what, (int)len);
	return (const uint8_t *)s;
}

void tdx_lua_setbytes(lua_State *L, const char *key, const void *p, size_t len)
{
	if (!p)
		return;
	lua_pushlstring(L, (const char *)p, len);
	lua_setfield(L, -2, key);
}

void tdx_lua_setint(lua_State *L, const char *key, lua_Number v)
{
	lua_pushnumber(L, v);
	lua_setfield(L, -2, key);
}

static void set_enclave_report(lua_State *L, const struct tdx_enclave_report *r)
{
	lua_createtable(L, 0, 9);
	tdx_lua_setbytes(L, "cpu_svn", r->cpu_svn, 16);
	tdx_lua_setint(L, "misc_select", r->misc_select);
	tdx_lua_setbytes(L, "attributes", r->attributes, 16);
	tdx_lua_setbytes(L, "mr_enclave", r->mr_enclave, 32);
	tdx_lua_setbytes(L, "mr_signer", r->mr_signer, 32);
	tdx_lua_setint(L, "isv_prod_id", r->isv_prod_id);
	tdx_lua_setint(L, "isv_svn", r->isv_svn);
	tdx_lua_setbytes(L, "report_data", r->report_data, 64);
	tdx_lua_setbytes(L, "raw", r->raw, TDX_ENCLAVE_REPORT_LEN);
}

static void set_td_report(lua_State *L, const struct tdx_td_report *r)
{
	static const char *const rtmr[] = { "rtmr0", "rtmr1", "rtmr2", "rtmr3" };

	lua_createtable(L, 0, 18);
	tdx_lua_setbytes(L, "tee_tcb_svn", r->tee_tcb_svn, 16);
	tdx_lua_setbytes(L, "mr_seam", r->mr_seam, 48);
	tdx_lua_setbytes(L, "mr_signer_seam", r->mr_signer_seam, 48);
	tdx_lua_setbytes(L, "seam_attributes", r->seam_attributes, 8);
	tdx_lua_setbytes(L, "td_attributes", r->td_attributes, 8);
	tdx_lua_setbytes(L, "xfam", r->xfam, 8);
	tdx_lua_setbytes(L, "mr_td", r->mr_td, 48);
	tdx_lua_setbytes(L, "mr_config_id", r->mr_config_id, 48);
	tdx_lua_setbytes(L, "mr_owner", r->mr_owner, 48);
	tdx_lua_setbytes(L, "mr_owner_config", r->mr_owner_config, 48);
	for (int i = 0; i < TDX_RTMR_COUNT; i++)
		tdx_lua_setbytes(L, rtmr[i], r->rtmr[i], 48);
	tdx_lua_setbytes(L, "report_data", r->report_data, 64);
	tdx_lua_setbytes(L, "tee_tcb_svn2", r->tee_tcb_svn2, 16);
	tdx_lua_setbytes(L, "mr_servicetd", r->mr_servicetd, 48);
}

/* parse_quote(bytes) -> q | nil, "EQUOTE: ...", "EQUOTE", offset */
static int l_parse_quote(lua_State *L)
{
	size_t len;
	const uint8_t *data = (const uint8_t *)luaL_checklstring(L, 1, &len);
	struct tdx_error err = { 0 };
	struct tdx_quote q;

	if (tdx_quote_parse(data, len, &q, &err)) {
		tdx_lua_fail(L, &err);
		if (err.offset == TDX_NO_OFFSET)
			lua_pushnil(L);
		else
			lua_pushnumber(L, (lua_Number)err.offset);
		return 4;
	}
	lua_createtable(L, 0, 40);
	tdx_lua_setint(L, "version", q.header.version);
	tdx_lua_setint(L, "attestation_key_type", q.header.att_key_type);
	tdx_lua_setint(L, "tee_type", q.header.tee_type);
	lua_pushstring(L, q.header.tee_type == TDX_TEE_TYPE_TDX ? "TDX" : "SGX");
	lua_setfield(L, -2, "tee");
	tdx_lua_setint(L, "qe_svn", q.header.qe_svn);
	tdx_lua_setint(L, "pce_svn", q.header.pce_svn);
	tdx_lua_setbytes(L, "qe_vendor_id", q.header.qe_vendor_id, 16);
	tdx_lua_setbytes(L, "user_data", q.header.user_data, 20);
	tdx_lua_setint(L, "body_type", q.body_type);
	tdx_lua_setint(L, "body_size", q.body_size);
	tdx_lua_setint(L, "body_offset", (lua_Number)q.body_offset);
	if (q.header.tee_type == TDX_TEE_TYPE_TDX)
		set_td_report(L, &q.td);
	else
		set_enclave_report(L, &q.sgx);
	lua_setfield(L, -2, "report");
	tdx_lua_setint(L, "size", (lua_Number)q.len);
	tdx_lua_setint(L, "signed_len", (lua_Number)q.signed_len);
	tdx_lua_setint(L, "sig_data_len", q.sig_data_len);
	tdx_lua_setbytes(L, "signature", q.signature, 64);
	tdx_lua_setbytes(L, "attestation_key", q.attestation_key, 64);
	tdx_lua_setint(L, "cert_type", q.cert_type);
	tdx_lua_setint(L, "cert_size", q.cert_size);
	tdx_lua_setbytes(L, "cert_data", q.cert_data, q.cert_size);
	if (q.has_qe_report) {
		set_enclave_report(L, &q.qe_report);
		lua_setfield(L, -2, "qe_report");
		tdx_lua_setbytes(L, "qe_report_signature", q.qe_report_signature, 64);
		tdx_lua_setbytes(L, "qe_auth_data", q.qe_auth_data, q.qe_auth_size);
		lua_pushboolean(L, tdx_quote_qe_hash_ok(&q));
		lua_setfield(L, -2, "qe_hash_ok");
	}
	if (q.cert_type == TDX_CERT_QE_REPORT) {
		tdx_lua_setint(L, "inner_cert_type", q.inner_cert_type);
		tdx_lua_setint(L, "inner_cert_size", q.inner_cert_size);
		tdx_lua_setbytes(L, "inner_cert_data", q.inner_cert_data, q.inner_cert_size);
	}
	tdx_lua_setbytes(L, "pck_chain", q.pck_chain, q.pck_chain_len);
	tdx_lua_setint(L, "end_offset", (lua_Number)q.end);
	tdx_lua_setint(L, "trailing", (lua_Number)q.trailing);
	lua_pushboolean(L, q.trailing_nonzero);
	lua_setfield(L, -2, "trailing_nonzero");
	return 1;
}

static void set_sgx_ext(lua_State *L, const struct tdx_sgx_ext *x)
{
	lua_createtable(L, 0, 7);
	tdx_lua_setbytes(L, "ppid", x->ppid, 16);
	tdx_lua_setbytes(L, "cpusvn", x->cpusvn, 16);
	tdx_lua_setint(L, "pcesvn", x->pcesvn);
	tdx_lua_setbytes(L, "pceid", x->pceid, 2);
	tdx_lua_setbytes(L, "fmspc", x->fmspc, 6);
	if (x->sgx_type >= 0)
		tdx_lua_setint(L, "sgx_type", x->sgx_type);
	lua_createtable(L, 16, 0);
	for (int i = 0; i < 16; i++) {
		lua_pushinteger(L, x->tcb_comp[i]);
		lua_rawseti(L, -2, i + 1);
	}
	lua_setfield(L, -2, "tcb_components");
}

/* parse_pem_chain(pem) -> { cert, ... } | nil, "EQUOTE: ...", "EQUOTE" */
static int l_parse_pem_chain(lua_State *L)
{
	size_t len, n;
	const char *pem = luaL_checklstring(L, 1, &len);
	struct tdx_cert_info *certs;
	struct tdx_error err = { 0 };

	if (tdx_pem_chain_parse(pem, len, &certs, &n, &err))
		return tdx_lua_fail(L, &err);
	lua_createtable(L, (int)n, 0);
	for (size_t i = 0; i < n; i++) {
		const struct tdx_cert_info *c = &certs[i];
		lua_createtable(L, 0, 7);
		lua_pushstring(L, c->subject);
		lua_setfield(L, -2, "subject");
		lua_pushstring(L, c->issuer);
		lua_setfield(L, -2, "issuer");
		lua_pushstring(L, c->serial);
		lua_setfield(L, -2, "serial");
		lua_pushstring(L, c->not_before);
		lua_setfield(L, -2, "not_before");
		lua_pushstring(L, c->not_after);
		lua_setfield(L, -2, "not_after");
		tdx_lua_setbytes(L, "sha256", c->sha256, 32);
		if (c->has_sgx_ext) {
			set_sgx_ext(L, &c->sgx);
			lua_setfield(L, -2, "sgx");
		}
		lua_rawseti(L, -2, (int)i + 1);
	}
	free(certs);
	return 1;
}

static const luaL_Reg funcs[] = {
	{ "parse_quote", l_parse_quote },
	{ "parse_pem_chain", l_parse_pem_chain },
	{ NULL, NULL },
};

int luaopen_moonstack_native_tdx(lua_State *L)
{
	lua_newtable(L);
	luaL_register(L, NULL, funcs);
	tdx_lua_eventlog_register(L);
	tdx_lua_guest_register(L);
	/* constants */
	tdx_lua_setint(L, "RUNTIME_EVENT_TYPE", TDX_RUNTIME_EVENT_TYPE);
	tdx_lua_setint(L, "TEE_TYPE_TDX", TDX_TEE_TYPE_TDX);
	tdx_lua_setint(L, "TEE_TYPE_SGX", TDX_TEE_TYPE_SGX);
	tdx_lua_setint(L, "QGS_PORT", TDX_QGS_PORT);
	tdx_lua_setint(L, "QGS_HOST_CID", TDX_QGS_HOST_CID);
	tdx_lua_setint(L, "CMD_GET_REPORT0", TDX_CMD_GET_REPORT0);
	tdx_lua_setint(L, "CMD_EXTEND_RTMR", TDX_CMD_EXTEND_RTMR);
	tdx_lua_setint(L, "CMD_GET_QUOTE", TDX_CMD_GET_QUOTE);
	lua_pushstring(L, TDX_GUEST_DEVICE);
	lua_setfield(L, -2, "DEVICE");
	lua_pushstring(L, TDX_SYSFS_MEASUREMENTS);
	lua_setfield(L, -2, "SYSFS_MEASUREMENTS");
	return 1;
}
