/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Password checks of `moonstack.native.crypto` (htpasswd bcrypt, password.c). bcrypt is slow
 * on purpose (cost 12 is ~200 ms): with a trailing callback the check runs on the libuv
 * thread pool and calls back cb(true | false | nil, msg, code) on the loop, so wrong logins
 * cannot stall a daemon; without one it blocks (tools). The password is copied for the worker
 * and wiped with its copy.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "crypto/crypto.h"
#include "crypto/crypto_lua.h"

/* One asynchronous check: owned copies of the inputs, the result, the callback. */
struct bcrypt_job {
	uv_work_t work;
	lua_State *L;
	int cb_ref;
	char *password;
	size_t password_len;
	char hash[64];
	int rc;
};

static void job_free(struct bcrypt_job *j)
{
	if (j->password) {
		OPENSSL_cleanse(j->password, j->password_len + 1);
		free(j->password);
	}
	OPENSSL_cleanse(j, sizeof(*j));
	free(j);
}

/* Push the result of crypto_bcrypt_check's @p rc: true, false, or the EINVAL failure. */
static int push_result(lua_State *L, int rc)
{
	if (rc == CRYPTO_EINVAL)
		return rt_push_fail(L, "EINVAL",
				    "bcrypt_check: not a bcrypt hash ($2y$/$2b$/$2a$)");
	lua_pushboolean(L, rc == CRYPTO_OK);
	return 1;
}

static void work_cb(uv_work_t *w)
{
	struct bcrypt_job *j = w->data;

	j->rc = crypto_bcrypt_check(j->password, j->password_len, j->hash);
}

static void after_work_cb(uv_work_t *w, int status)
{
	struct bcrypt_job *j = w->data;
	lua_State *L = j->L;
	int n;

	lua_rawgeti(L, LUA_REGISTRYINDEX, j->cb_ref);
	luaL_unref(L, LUA_REGISTRYINDEX, j->cb_ref);
	if (status == UV_ECANCELED)
		n = rt_push_fail(L, "ECANCELED", "bcrypt_check: cancelled");
	else
		n = push_result(L, j->rc);
	job_free(j);
	rt_pcall_log(L, n, 0, "bcrypt_check callback");
}

/* bcrypt_check(password, hash [, cb]) -> true | false; nil, 'EINVAL: ...' if hash is not
 * bcrypt. With cb: queued on the thread pool, returns true (or nil, msg, code if it could
 * not be queued) and calls cb(result...) later. */
static int l_bcrypt_check(lua_State *L)
{
	size_t len;
	const char *pw = crypto_lua_string(L, 1);
	const char *hash = crypto_lua_string(L, 2);

	lua_tolstring(L, 1, &len);
	if (lua_isnoneornil(L, 3))
		return push_result(L, crypto_bcrypt_check(pw, len, hash));
	if (!lua_isfunction(L, 3))
		return luaL_error(L, "bcrypt_check: the callback must be a function");
	if (!crypto_bcrypt_hash_valid(hash))
		return push_result(L, CRYPTO_EINVAL);

	struct bcrypt_job *j = calloc(1, sizeof(*j));
	if (!j || !(j->password = malloc(len + 1))) {
		free(j);
		return luaL_error(L, "bcrypt_check: out of memory");
	}
	memcpy(j->password, pw, len);
	j->password[len] = '\0'; /* crypt_rn reads a C string */
	j->password_len = len;
	memcpy(j->hash, hash, strlen(hash) + 1); /* valid: 60 characters */
	j->work.data = j;
	int rc = rt_queue_lua_work(L, &j->work, 3, &j->L, &j->cb_ref, work_cb, after_work_cb);
	if (rc) {
		job_free(j);
		return rt_push_uv_fail(L, rc);
	}
	lua_pushboolean(L, 1);
	return 1;
}

/* bcrypt_hash_valid(hash) -> boolean */
static int l_bcrypt_hash_valid(lua_State *L)
{
	lua_pushboolean(L, crypto_bcrypt_hash_valid(crypto_lua_string(L, 1)));
	return 1;
}

static const luaL_Reg password_funcs[] = {
	{ "bcrypt_check", l_bcrypt_check },
	{ "bcrypt_hash_valid", l_bcrypt_hash_valid },
	{ NULL, NULL },
};

void crypto_lua_register_password(lua_State *L)
{
	crypto_lua_register(L, password_funcs);
}
