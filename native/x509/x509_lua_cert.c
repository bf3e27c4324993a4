/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Binding `moonstack.native.x509`, certificate half: options tables to struct x509_cert_opts,
 * cert_create / csr_create, cert_info / csr_info as tables, and verify.
 *
 *   x.cert_create(opts, subject_key, issuer_cert?, issuer_key?) -> DER
 *   x.csr_create(opts, key) -> DER
 *   x.cert_info(pem_or_der) -> table;  x.csr_info(pem_or_der) -> table
 *   x.verify(leaf, chain?, roots, { time=, purpose='server'|'client'|'any', hostname=,
 *            partial= }) -> true | nil, "EVERIFY: ...", "EVERIFY"
 *
 * opts: cn, org, sans = {...}, not_before, not_after (unix seconds), serial (bytes), ca,
 * pathlen, key_usage = {'digital_signature', ...}, eku = {'server_auth', 'client_auth'},
 * ski = false, aki = false, ratls = { quote=, event_log=, app_id=, special_usage=,
 * attestation=, app_info= }, extensions = { { oid=, value=, critical=, der= }, ... }.
 */
#include <stdio.h>
#include <string.h>

#include "x509/x509_lua.h"

static const char *const ku_names[] = {
	"digital_signature", "non_repudiation", "key_encipherment",
	"data_encipherment", "key_agreement",	"key_cert_sign",
	"crl_sign",	     "encipher_only",	"decipher_only",
};
#define N_KU (sizeof(ku_names) / sizeof(ku_names[0]))

static const char *const opt_names[] = {
	"cn",	   "org",	"sans", "not_before", "not_after", "serial", "ca",
	"pathlen", "key_usage", "eku",	"ski",	      "aki",	   "ratls",  "extensions",
};

/* Raise unless every key of the table at @p idx is in @p names. */
static void check_keys(lua_State *L, int idx, const char *fn, const char *const *names, size_t n)
{
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		bool known = false;
		if (lua_type(L, -1) == LUA_TSTRING)
			for (size_t i = 0; i < n && !known; i++)
				known = strcmp(lua_tostring(L, -1), names[i]) == 0;
		if (!known)
			luaL_error(L, "%s: unknown option '%s'", fn,
				   lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
								  : luaL_typename(L, -1));
	}
}

/* The field @p key of the table at @p idx as a string (NULL if nil); raises otherwise. */
static const char *opt_string(lua_State *L, int idx, const char *key, size_t *len, const char *fn)
{
	lua_getfield(L, idx, key);
	const char *s = NULL;
	if (lua_type(L, -1) == LUA_TSTRING)
		s = lua_tolstring(L, -1, len); // the table keeps the string alive
	else if (!lua_isnil(L, -1))
		luaL_error(L, "%s: option '%s' must be a string", fn, key);
	lua_pop(L, 1);
	return s;
}

static bool opt_bool(lua_State *L, int idx, const char *key, bool dflt, const char *fn)
{
	lua_getfield(L, idx, key);
	bool v = dflt;
	if (lua_type(L, -1) == LUA_TBOOLEAN)
		v = lua_toboolean(L, -1);
	else if (!lua_isnil(L, -1))
		luaL_error(L, "%s: option '%s' must be a boolean", fn, key);
	lua_pop(L, 1);
	return v;
}

static int64_t opt_number(lua_State *L, int idx, const char *key, int64_t dflt, const char *fn)
{
	lua_getfield(L, idx, key);
	int64_t v = dflt;
	if (lua_type(L, -1) == LUA_TNUMBER)
		v = (int64_t)lua_tonumber(L, -1);
	else if (!lua_isnil(L, -1))
		luaL_error(L, "%s: option '%s' must be a number", fn, key);
	lua_pop(L, 1);
	return v;
}

/* Push the field @p key of the table at @p idx if it is an array (returns its length), else
 * push nothing and return -1 (raises if it is neither nil nor a table). */
static int opt_array(lua_State *L, int idx, const char *key, const char *fn)
{
	lua_getfield(L, idx, key);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return -1;
	}
	if (!lua_istable(L, -1))
		luaL_error(L, "%s: option '%s' must be a list", fn, key);
	return (int)lua_objlen(L, -1);
}

static unsigned names_to_bits(lua_State *L, int idx, const char *key, const char *const *names,
			      size_t n_names, const char *fn)
{
	int n = opt_array(L, idx, key, fn);
	unsigned bits = 0;
	for (int i = 1; i <= n; i++) {
		lua_rawgeti(L, -1, i);
		const char *s = lua_tostring(L, -1);
		size_t j = 0;
		while (s && j < n_names && strcmp(s, names[j]) != 0)
			j++;
		if (!s || j == n_names)
			luaL_error(L, "%s: unknown %s '%s'", fn, key, s ? s : "?");
		bits |= 1u << j;
		lua_pop(L, 1);
	}
	if (n >= 0)
		lua_pop(L, 1);
	return bits;
}

/* Fill @p o from the options table at @p idx; arrays live in userdata left on the stack. */
static void read_opts(lua_State *L, int idx, struct x509_cert_opts *o, const char *fn)
{
	static const char *const eku_names[] = { "server_auth", "client_auth" };
	luaL_checktype(L, idx, LUA_TTABLE);
	check_keys(L, idx, fn, opt_names, sizeof(opt_names) / sizeof(opt_names[0]));
	memset(o, 0, sizeof(*o));
	o->cn = opt_string(L, idx, "cn", NULL, fn);
	o->org = opt_string(L, idx, "org", NULL, fn);
	o->not_before = opt_number(L, idx, "not_before", 0, fn);
	o->not_after = opt_number(L, idx, "not_after", 0, fn);
	o->serial = (const uint8_t *)opt_string(L, idx, "serial", &o->serial_len, fn);
	o->ca = opt_bool(L, idx, "ca", false, fn);
	o->pathlen = (int)opt_number(L, idx, "pathlen", -1, fn);
	o->key_usage = names_to_bits(L, idx, "key_usage", ku_names, N_KU, fn);
	o->eku = names_to_bits(L, idx, "eku", eku_names, 2, fn);
	o->no_ski = !opt_bool(L, idx, "ski", true, fn);
	o->no_aki = !opt_bool(L, idx, "aki", true, fn);

	int n = opt_array(L, idx, "sans", fn);
	if (n > 0) {
		const char **sans = lua_newuserdata(L, (size_t)n * sizeof(*sans));
		for (int i = 1; i <= n; i++) {
			lua_rawgeti(L, -2, i);
			if (lua_type(L, -1) != LUA_TSTRING)
				luaL_error(L, "%s: sans[%d] must be a string", fn, i);
			sans[i - 1] = lua_tostring(L, -1);
			lua_pop(L, 1);
		}
		o->sans = sans;
		o->n_sans = (size_t)n;
		lua_remove(L, -2); // keep the userdata, drop the list (opts keeps it alive)
	} else if (n == 0) {
		lua_pop(L, 1);
	}

	// custom extensions: the RA-TLS ones first (enum order), then `extensions`
	lua_getfield(L, idx, "ratls");
	int ratls = lua_gettop(L);
	if (!lua_isnil(L, ratls) && !lua_istable(L, ratls))
		luaL_error(L, "%s: option 'ratls' must be a table", fn);
	int n_ext = opt_array(L, idx, "extensions", fn);
	int ext_list = n_ext >= 0 ? lua_gettop(L) : 0;
	size_t cap = X509_RATLS_COUNT + (size_t)(n_ext > 0 ? n_ext : 0);
	struct x509_ext_spec *exts = lua_newuserdata(L, cap * sizeof(*exts));
	size_t k = 0;
	if (lua_istable(L, ratls)) {
		const char *names[X509_RATLS_COUNT];
		for (int i = 0; i < X509_RATLS_COUNT; i++)
			names[i] = x509_ratls_name((enum x509_ratls_ext)i);
		check_keys(L, ratls, fn, names, X509_RATLS_COUNT);
		for (int i = 0; i < X509_RATLS_COUNT; i++) {
			size_t len;
			const char *v = opt_string(L, ratls, names[i], &len, fn);
			if (v)
				exts[k++] = x509_ratls_ext((enum x509_ratls_ext)i, v, len);
		}
	}
	for (int i = 1; i <= n_ext; i++) {
		lua_rawgeti(L, ext_list, i);
		int e = lua_gettop(L);
		if (!lua_istable(L, e))
			luaL_error(L, "%s: extensions[%d] must be a table", fn, i);
		static const char *const ext_keys[] = { "oid", "value", "critical", "der" };
		check_keys(L, e, fn, ext_keys, 4);
		struct x509_ext_spec *s = &exts[k++];
		memset(s, 0, sizeof(*s));
		s->oid = opt_string(L, e, "oid", NULL, fn);
		s->data = (const uint8_t *)opt_string(L, e, "value", &s->len, fn);
		if (!s->oid || !s->data)
			luaL_error(L, "%s: extensions[%d] needs oid and value strings", fn, i);
		s->critical = opt_bool(L, e, "critical", false, fn);
		s->encoding = opt_bool(L, e, "der", false, fn) ? X509_EXT_DER : X509_EXT_OCTETS;
		lua_pop(L, 1);
	}
	o->exts = exts;
	o->n_exts = k;
}

/* The certificate argument at @p idx (PEM or DER string) loaded, or NULL with @p err. */
static X509 *arg_cert(lua_State *L, int idx, struct x509_error *err)
{
	size_t len;
	const char *s = luaL_checklstring(L, idx, &len);
	return x509_cert_load(s, len, err);
}

static int l_cert_create(lua_State *L)
{
	const char *fn = "cert_create";
	struct x509_cert_opts o;
	lua_settop(L, 4); // read_opts leaves its arrays above the arguments
	read_opts(L, 1, &o, fn);
	EVP_PKEY *subject = x509_lua_check_key(L, 2, fn);
	EVP_PKEY *issuer_key = lua_isnoneornil(L, 4) ? NULL : x509_lua_check_key(L, 4, fn);
	struct x509_error err;
	X509 *issuer = NULL;
	if (!lua_isnoneornil(L, 3)) {
		issuer = arg_cert(L, 3, &err);
		if (!issuer)
			return x509_lua_fail(L, &err);
	}
	X509 *x = x509_cert_create(&o, subject, issuer, issuer_key, &err);
	X509_free(issuer);
	if (!x)
		return x509_lua_fail(L, &err);
	struct x509_buf der;
	int rc = x509_cert_der(x, &der, &err);
	X509_free(x);
	if (rc)
		return x509_lua_fail(L, &err);
	x509_lua_push_buf(L, &der);
	return 1;
}

static int l_csr_create(lua_State *L)
{
	struct x509_cert_opts o;
	lua_settop(L, 2);
	read_opts(L, 1, &o, "csr_create");
	EVP_PKEY *key = x509_lua_check_key(L, 2, "csr_create");
	struct x509_error err;
	X509_REQ *req = x509_csr_create(&o, key, &err);
	if (!req)
		return x509_lua_fail(L, &err);
	struct x509_buf der;
	int rc = x509_csr_der(req, &der, &err);
	X509_REQ_free(req);
	if (rc)
		return x509_lua_fail(L, &err);
	x509_lua_push_buf(L, &der);
	return 1;
}

static void set_string(lua_State *L, const char *key, const char *value)
{
	if (value) {
		lua_pushstring(L, value);
		lua_setfield(L, -2, key);
	}
}

static void set_bytes(lua_State *L, const char *key, const void *data, size_t len)
{
	lua_pushlstring(L, data, len);
	lua_setfield(L, -2, key);
}

static void set_hex(lua_State *L, const char *key, const uint8_t *data, size_t len)
{
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	for (size_t i = 0; i < len; i++) {
		char two[3];
		snprintf(two, sizeof(two), "%02x", data[i]);
		luaL_addlstring(&b, two, 2);
	}
	luaL_pushresult(&b);
	lua_setfield(L, -2, key);
}

static void push_sans(lua_State *L, const struct x509_info *info)
{
	static const char *const types[] = { "", "dns", "ip", "email", "uri", "other" };
	lua_createtable(L, (int)info->n_sans, 0);
	for (size_t i = 0; i < info->n_sans; i++) {
		lua_createtable(L, 0, 2);
		set_string(L, "type", types[info->sans[i].type]);
		set_string(L, "value", info->sans[i].value);
		lua_rawseti(L, -2, (int)i + 1);
	}
	lua_setfield(L, -2, "sans");
	// convenience lists of the DNS names and IPs
	const char *kinds[2] = { "dns", "ips" };
	enum x509_san_type want[2] = { X509_SAN_DNS, X509_SAN_IP };
	for (int k = 0; k < 2; k++) {
		lua_newtable(L);
		int n = 0;
		for (size_t i = 0; i < info->n_sans; i++) {
			if (info->sans[i].type == want[k]) {
				lua_pushstring(L, info->sans[i].value);
				lua_rawseti(L, -2, ++n);
			}
		}
		lua_setfield(L, -2, kinds[k]);
	}
}

static void push_usages(lua_State *L, const struct x509_info *info)
{
	if (info->has_key_usage) {
		lua_newtable(L);
		for (size_t i = 0; i < N_KU; i++) {
			if (info->key_usage & (1u << i)) {
				lua_pushboolean(L, 1);
				lua_setfield(L, -2, ku_names[i]);
			}
		}
		lua_setfield(L, -2, "key_usage");
	}
	if (info->has_eku) {
		lua_newtable(L);
		if (info->eku & X509_EKU_SERVER_AUTH) {
			lua_pushboolean(L, 1);
			lua_setfield(L, -2, "server_auth");
		}
		if (info->eku & X509_EKU_CLIENT_AUTH) {
			lua_pushboolean(L, 1);
			lua_setfield(L, -2, "client_auth");
		}
		lua_createtable(L, (int)info->n_eku_oids, 0);
		for (size_t i = 0; i < info->n_eku_oids; i++) {
			lua_pushstring(L, info->eku_oids[i]);
			lua_rawseti(L, -2, (int)i + 1);
		}
		lua_setfield(L, -2, "oids");
		lua_setfield(L, -2, "eku");
	}
}

/* extensions = { {oid, critical, value}, ... }; ratls = { name = content }. */
static void push_exts(lua_State *L, const struct x509_info *info)
{
	lua_createtable(L, (int)info->n_exts, 0);
	for (size_t i = 0; i < info->n_exts; i++) {
		lua_createtable(L, 0, 3);
		set_string(L, "oid", info->exts[i].oid);
		lua_pushboolean(L, info->exts[i].critical);
		lua_setfield(L, -2, "critical");
		set_bytes(L, "value", info->exts[i].value.data, info->exts[i].value.len);
		lua_rawseti(L, -2, (int)i + 1);
	}
	lua_setfield(L, -2, "extensions");
	lua_newtable(L);
	int invalid = 0;
	for (int i = 0; i < X509_RATLS_COUNT; i++) {
		const uint8_t *data;
		size_t len;
		int found = x509_info_ratls(info, (enum x509_ratls_ext)i, &data, &len, NULL);
		if (found == 1) {
			set_bytes(L, x509_ratls_name((enum x509_ratls_ext)i), data, len);
		} else if (found < 0) {
			if (!invalid++)
				lua_newtable(L);
			lua_pushstring(L, x509_ratls_name((enum x509_ratls_ext)i));
			lua_rawseti(L, -2, invalid);
		}
	}
	if (invalid) // extensions at RA-TLS OIDs that are not OCTET STRINGs
		lua_setfield(L, -3, "ratls_invalid");
	lua_setfield(L, -2, "ratls");
}

static void push_info(lua_State *L, const struct x509_info *info, bool cert)
{
	lua_createtable(L, 0, 32);
	lua_pushinteger(L, info->version);
	lua_setfield(L, -2, "version");
	set_string(L, "subject", info->subject);
	set_string(L, "cn", info->cn);
	set_string(L, "org", info->org);
	if (cert) {
		set_string(L, "issuer", info->issuer);
		set_string(L, "issuer_cn", info->issuer_cn);
		set_string(L, "issuer_org", info->issuer_org);
		set_hex(L, "serial", info->serial.data, info->serial.len);
		lua_pushnumber(L, (lua_Number)info->not_before);
		lua_setfield(L, -2, "not_before");
		lua_pushnumber(L, (lua_Number)info->not_after);
		lua_setfield(L, -2, "not_after");
		set_hex(L, "fingerprint", info->fingerprint, sizeof(info->fingerprint));
		lua_pushboolean(L, info->self_issued);
		lua_setfield(L, -2, "self_issued");
	} else {
		lua_pushboolean(L, info->signature_ok);
		lua_setfield(L, -2, "signature_ok");
	}
	push_sans(L, info);
	lua_pushboolean(L, info->ca);
	lua_setfield(L, -2, "ca");
	if (info->pathlen >= 0) {
		lua_pushinteger(L, info->pathlen);
		lua_setfield(L, -2, "pathlen");
	}
	push_usages(L, info);
	if (info->ski.len)
		set_hex(L, "ski", info->ski.data, info->ski.len);
	if (info->aki.len)
		set_hex(L, "aki", info->aki.data, info->aki.len);
	push_exts(L, info);
	set_bytes(L, "spki", info->spki.data, info->spki.len);
	set_bytes(L, "der", info->der.data, info->der.len);
	set_string(L, "signature_algorithm", info->sig_alg);
}

static int l_cert_info(lua_State *L)
{
	struct x509_error err;
	X509 *x = arg_cert(L, 1, &err);
	if (!x)
		return x509_lua_fail(L, &err);
	struct x509_info info;
	int rc = x509_cert_info(x, &info, &err);
	X509_free(x);
	if (rc)
		return x509_lua_fail(L, &err);
	push_info(L, &info, true);
	x509_info_free(&info);
	return 1;
}

static int l_csr_info(lua_State *L)
{
	size_t len;
	const char *s = luaL_checklstring(L, 1, &len);
	struct x509_error err;
	X509_REQ *req = x509_csr_load(s, len, &err);
	if (!req)
		return x509_lua_fail(L, &err);
	struct x509_info info;
	int rc = x509_csr_info(req, &info, &err);
	X509_REQ_free(req);
	if (rc)
		return x509_lua_fail(L, &err);
	push_info(L, &info, false);
	x509_info_free(&info);
	return 1;
}

/* Raise unless the argument at @p idx is nil or a list of strings; returns its length. */
static size_t check_list(lua_State *L, int idx, const char *fn)
{
	if (lua_isnoneornil(L, idx))
		return 0;
	luaL_checktype(L, idx, LUA_TTABLE);
	size_t n = lua_objlen(L, idx);
	for (size_t i = 1; i <= n; i++) {
		lua_rawgeti(L, idx, (int)i);
		if (lua_type(L, -1) != LUA_TSTRING)
			luaL_error(L, "%s: certificate lists hold PEM or DER strings", fn);
		lua_pop(L, 1);
	}
	return n;
}

/* Load the @p count strings of the list at @p idx into @p list. Does not raise. */
static int load_list(lua_State *L, int idx, size_t count, X509 **list, size_t *n,
		     struct x509_error *err)
{
	*n = 0;
	for (size_t i = 0; i < count; i++) {
		lua_rawgeti(L, idx, (int)i + 1);
		size_t len;
		const char *s = lua_tolstring(L, -1, &len);
		list[i] = x509_cert_load(s, len, err);
		lua_pop(L, 1);
		if (!list[i])
			return -1;
		(*n)++;
	}
	return 0;
}

static void free_list(X509 **list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		X509_free(list[i]);
}

static int l_verify(lua_State *L)
{
	const char *fn = "verify";
	struct x509_verify_opts o = { 0 };
	lua_settop(L, 4);
	if (!lua_isnoneornil(L, 4)) {
		static const char *const keys[] = { "time", "purpose", "hostname", "partial" };
		luaL_checktype(L, 4, LUA_TTABLE);
		check_keys(L, 4, fn, keys, 4);
		o.time = opt_number(L, 4, "time", 0, fn);
		o.hostname = opt_string(L, 4, "hostname", NULL, fn);
		o.partial = opt_bool(L, 4, "partial", false, fn);
		const char *p = opt_string(L, 4, "purpose", NULL, fn);
		if (p && strcmp(p, "server") == 0)
			o.purpose = X509_FOR_SERVER;
		else if (p && strcmp(p, "client") == 0)
			o.purpose = X509_FOR_CLIENT;
		else if (p && strcmp(p, "any") != 0)
			luaL_error(L, "%s: purpose must be 'server', 'client' or 'any'", fn);
	}
	luaL_checklstring(L, 1, NULL);
	luaL_checktype(L, 3, LUA_TTABLE);
	size_t want_chain = check_list(L, 2, fn), want_roots = check_list(L, 3, fn);
	// every allocation that can raise happens before anything is loaded
	X509 **chain = lua_newuserdata(L, (want_chain + 1) * sizeof(*chain));
	X509 **roots = lua_newuserdata(L, (want_roots + 1) * sizeof(*roots));
	size_t n_chain = 0, n_roots = 0;
	struct x509_error err;
	X509 *leaf = arg_cert(L, 1, &err);
	if (!leaf)
		return x509_lua_fail(L, &err);
	int rc = load_list(L, 2, want_chain, chain, &n_chain, &err);
	if (rc == 0)
		rc = load_list(L, 3, want_roots, roots, &n_roots, &err);
	if (rc == 0)
		rc = x509_verify(leaf, chain, n_chain, roots, n_roots, &o, &err);
	free_list(roots, n_roots);
	free_list(chain, n_chain);
	X509_free(leaf);
	if (rc)
		return x509_lua_fail(L, &err);
	lua_pushboolean(L, 1);
	return 1;
}

void x509_lua_register_cert(lua_State *L)
{
	static const luaL_Reg functions[] = {
		{ "cert_create", l_cert_create }, { "csr_create", l_csr_create },
		{ "cert_info", l_cert_info },	  { "csr_info", l_csr_info },
		{ "verify", l_verify },		  { NULL, NULL },
	};
	luaL_register(L, NULL, functions);
}
