/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Event log part of `moonstack.native.tdx`: TCG/CCEL parsing, the TdxEvent conversion, runtime
 * event preimages/digests and RTMR replay. Events cross as tables
 * { imr, event_type, digest, event, event_payload, version } with binary strings.
 */
#include <stdlib.h>
#include <string.h>

#include "moonstack/rt.h"
#include "tdx/tdx_lua.h"

/* parse_tcg(bytes) -> { spec_id = {...}, events = {...}, end_offset } | nil, msg, EEVENTLOG */
static int l_parse_tcg(lua_State *L)
{
	size_t len;
	const uint8_t *data = (const uint8_t *)luaL_checklstring(L, 1, &len);
	struct tdx_tcg_log log;
	struct tdx_error err = { 0 };

	if (tdx_tcg_parse(data, len, &log, &err))
		return tdx_lua_fail(L, &err);
	lua_createtable(L, 0, 3);
	lua_createtable(L, 0, 8);
	tdx_lua_setint(L, "mr_index", log.header_mr_index);
	tdx_lua_setint(L, "event_type", log.header_event_type);
	tdx_lua_setint(L, "platform_class", log.platform_class);
	lua_pushfstring(L, "%d.%d", log.spec_version_major, log.spec_version_minor);
	lua_setfield(L, -2, "spec_version");
	tdx_lua_setint(L, "spec_errata", log.spec_errata);
	tdx_lua_setint(L, "uintn_size", log.uintn_size);
	lua_createtable(L, (int)log.num_algs, 0);
	for (uint32_t i = 0; i < log.num_algs; i++) {
		lua_createtable(L, 0, 2);
		tdx_lua_setint(L, "id", log.algs[i].id);
		tdx_lua_setint(L, "digest_size", log.algs[i].digest_size);
		lua_rawseti(L, -2, (int)i + 1);
	}
	lua_setfield(L, -2, "algorithms");
	tdx_lua_setbytes(L, "vendor_info", log.vendor_info ? log.vendor_info : (const uint8_t *)"",
			 log.vendor_info_size);
	lua_setfield(L, -2, "spec_id");
	lua_createtable(L, (int)log.count, 0);
	for (size_t i = 0; i < log.count; i++) {
		const struct tdx_tcg_event *e = &log.events[i];
		lua_createtable(L, 0, 5);
		tdx_lua_setint(L, "mr_index", e->mr_index);
		tdx_lua_setint(L, "event_type", e->event_type);
		tdx_lua_setint(L, "offset", (lua_Number)e->offset);
		lua_createtable(L, (int)e->digest_count, 0);
		for (uint32_t k = 0; k < e->digest_count; k++) {
			lua_createtable(L, 0, 2);
			tdx_lua_setint(L, "alg", e->digests[k].alg);
			tdx_lua_setbytes(L, "digest", e->digests[k].value, e->digests[k].size);
			lua_rawseti(L, -2, (int)k + 1);
		}
		lua_setfield(L, -2, "digests");
		tdx_lua_setbytes(L, "data", e->data ? e->data : (const uint8_t *)"", e->data_len);
		lua_rawseti(L, -2, (int)i + 1);
	}
	lua_setfield(L, -2, "events");
	tdx_lua_setint(L, "end_offset", (lua_Number)log.end);
	tdx_tcg_log_free(&log);
	return 1;
}

static void push_event(lua_State *L, const struct tdx_event *e)
{
	lua_createtable(L, 0, 6);
	tdx_lua_setint(L, "imr", e->imr);
	tdx_lua_setint(L, "event_type", e->event_type);
	tdx_lua_setbytes(L, "digest", e->digest, e->digest_len);
	lua_pushlstring(L, e->name, e->name_len);
	lua_setfield(L, -2, "event");
	tdx_lua_setbytes(L, "event_payload", e->payload ? e->payload : (const uint8_t *)"",
			 e->payload_len);
}

/* ccel_events(bytes [, acpi_labels]) -> { TdxEvent, ... } | nil, msg, EEVENTLOG */
static int l_ccel_events(lua_State *L)
{
	size_t len, n;
	const uint8_t *data = (const uint8_t *)luaL_checklstring(L, 1, &len);
	bool labels = lua_toboolean(L, 2);
	struct tdx_tcg_log log;
	struct tdx_event *ev;
	struct tdx_error err = { 0 };

	if (tdx_tcg_parse(data, len, &log, &err))
		return tdx_lua_fail(L, &err);
	int rc = tdx_ccel_to_events(&log, &ev, &n, &err);
	tdx_tcg_log_free(&log);
	if (rc)
		return tdx_lua_fail(L, &err);
	if (labels)
		tdx_events_label_acpi(ev, n);
	lua_createtable(L, (int)n, 0);
	for (size_t i = 0; i < n; i++) {
		push_event(L, &ev[i]);
		lua_rawseti(L, -2, (int)i + 1);
	}
	free(ev);
	return 1;
}

static int check_version(lua_State *L, int idx, const char *fn)
{
	lua_Integer v = luaL_optinteger(L, idx, 1);

	if (v != 1 && v != 2)
		luaL_error(L, "tdx.%s: version must be 1 or 2", fn);
	return (int)v;
}

/* runtime_preimage(name, payload [, version]) -> bytes | nil, msg, EINVAL */
static int l_runtime_preimage(lua_State *L)
{
	size_t nlen, plen, len;
	const char *name = luaL_checklstring(L, 1, &nlen);
	const char *payload = luaL_checklstring(L, 2, &plen);
	int version = check_version(L, 3, "runtime_preimage");
	struct tdx_error err = { 0 };
	uint8_t *pre;

	if (tdx_runtime_preimage(version, name, nlen, (const uint8_t *)payload, plen, &pre, &len,
				 &err))
		return tdx_lua_fail(L, &err);
	lua_pushlstring(L, (const char *)pre, len);
	free(pre);
	return 1;
}

/* runtime_digest(name, payload [, version]) -> 48 bytes | nil, msg, EINVAL */
static int l_runtime_digest(lua_State *L)
{
	size_t nlen, plen;
	const char *name = luaL_checklstring(L, 1, &nlen);
	const char *payload = luaL_checklstring(L, 2, &plen);
	int version = check_version(L, 3, "runtime_digest");
	struct tdx_error err = { 0 };
	uint8_t d[TDX_MR_LEN];

	if (tdx_runtime_digest(version, name, nlen, (const uint8_t *)payload, plen, d, &err))
		return tdx_lua_fail(L, &err);
	lua_pushlstring(L, (const char *)d, sizeof(d));
	return 1;
}

/* Read event @i (a table at the top of the stack) into @e; strings stay on the Lua stack's
 * table, which outlives the call. Raises on misuse. */
static void check_event(lua_State *L, size_t i, struct tdx_event *e)
{
	size_t len;

	memset(e, 0, sizeof(*e));
	if (!lua_istable(L, -1))
		luaL_error(L, "tdx.replay: event %d is not a table", (int)i);
	lua_getfield(L, -1, "imr");
	lua_getfield(L, -2, "event_type");
	if (lua_type(L, -2) != LUA_TNUMBER || lua_type(L, -1) != LUA_TNUMBER ||
	    lua_tonumber(L, -2) < 0 || lua_tonumber(L, -1) < 0 ||
	    lua_tonumber(L, -1) > 4294967295.0)
		luaL_error(L, "tdx.replay: event %d needs numeric imr and event_type", (int)i);
	double imr = lua_tonumber(L, -2);
	e->imr = imr > 4294967295.0 ? 0xFFFFFFFFu : (uint32_t)imr;
	e->event_type = (uint32_t)lua_tonumber(L, -1);
	lua_pop(L, 2);
	lua_getfield(L, -1, "digest");
	if (!lua_isnil(L, -1)) {
		const char *d = lua_tolstring(L, -1, &len);
		if (lua_type(L, -1) != LUA_TSTRING || (len != 0 && len != TDX_MR_LEN))
			luaL_error(L, "tdx.replay: event %d: digest must be empty or 48 bytes",
				   (int)i);
		memcpy(e->digest, d, len);
		e->digest_len = len;
	}
	lua_pop(L, 1);
	lua_getfield(L, -1, "event");
	if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
		luaL_error(L, "tdx.replay: event %d: event must be a string", (int)i);
	e->name = lua_isnil(L, -1) ? "" : lua_tolstring(L, -1, &e->name_len);
	lua_pop(L, 1);
	lua_getfield(L, -1, "event_payload");
	if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
		luaL_error(L, "tdx.replay: event %d: event_payload must be a string", (int)i);
	e->payload = lua_isnil(L, -1) ? (const uint8_t *)""
				      : (const uint8_t *)lua_tolstring(L, -1, &e->payload_len);
	lua_pop(L, 1);
	lua_getfield(L, -1, "version");
	e->version = lua_isnil(L, -1) ? 1 : (int)lua_tointeger(L, -1);
	if (e->version != 1 && e->version != 2)
		luaL_error(L, "tdx.replay: event %d: version must be 1 or 2", (int)i);
	lua_pop(L, 1);
}

/* replay(events [, until]) -> { rtmr0, rtmr1, rtmr2, rtmr3 } | nil, msg, EEVENTLOG */
static int l_replay(lua_State *L)
{
	uint8_t rtmr[TDX_RTMR_COUNT][TDX_MR_LEN];
	struct tdx_error err = { 0 };

	luaL_checktype(L, 1, LUA_TTABLE);
	const char *until = luaL_optstring(L, 2, NULL);
	size_t n = lua_objlen(L, 1);
	struct tdx_event *ev = lua_newuserdata(L, (n ? n : 1) * sizeof(*ev)); /* freed by GC */
	for (size_t i = 0; i < n; i++) {
		lua_rawgeti(L, 1, (int)i + 1);
		check_event(L, i + 1, &ev[i]);
		lua_pop(L, 1); /* the strings stay reachable from the events table */
	}
	if (tdx_replay(ev, n, until, rtmr, &err))
		return tdx_lua_fail(L, &err);
	lua_createtable(L, TDX_RTMR_COUNT, 0);
	for (int i = 0; i < TDX_RTMR_COUNT; i++) {
		lua_pushlstring(L, (const char *)rtmr[i], TDX_MR_LEN);
		lua_rawseti(L, -2, i + 1);
	}
	return 1;
}

/* extend(mr, digest) -> SHA-384(mr || digest) */
static int l_extend(lua_State *L)
{
	uint8_t mr[TDX_MR_LEN];

	memcpy(mr, tdx_lua_check_bytes(L, 1, TDX_MR_LEN, "extend", "mr"), TDX_MR_LEN);
	tdx_rtmr_extend(mr, tdx_lua_check_bytes(L, 2, TDX_MR_LEN, "extend", "digest"));
	lua_pushlstring(L, (const char *)mr, TDX_MR_LEN);
	return 1;
}

/* sha384(data) -> 48 bytes */
static int l_sha384(lua_State *L)
{
	size_t len;
	const char *data = luaL_checklstring(L, 1, &len);
	uint8_t d[TDX_MR_LEN];

	if (tdx_sha384(data, len, d))
		return luaL_error(L, "tdx.sha384: out of memory");
	lua_pushlstring(L, (const char *)d, sizeof(d));
	return 1;
}

static const luaL_Reg funcs[] = {
	{ "parse_tcg", l_parse_tcg },
	{ "ccel_events", l_ccel_events },
	{ "runtime_preimage", l_runtime_preimage },
	{ "runtime_digest", l_runtime_digest },
	{ "replay", l_replay },
	{ "extend", l_extend },
	{ "sha384", l_sha384 },
	{ NULL, NULL },
};

void tdx_lua_eventlog_register(lua_State *L)
{
	luaL_register(L, NULL, funcs);
}
