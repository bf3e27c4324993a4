-- moonstack's verifier for other Lua apps (plain LuaJIT, OpenResty): the verification natives
-- (crypto, x509, tdx, dcap: native/*/ with their Lua bindings) built as Lua C modules, and the
-- pure-Lua verifier (moonstack.verifier) with the modules it needs. A relying party verifies
-- TDX quotes against local collateral and RA-TLS certificates inside its own process; fetching
-- collateral from a PCCS needs the moonstack runtime (its HTTP client and tasks). See README.md.
-- Build from a checkout: luarocks --lua-version 5.1 make rockspecs/moonstack-scm-1.rockspec \
--   --tree TREE --deps-mode none LUA_INCDIR=/usr/include/luajit-2.1
rockspec_format = '3.0'
package = 'moonstack'
version = 'scm-1'
source = { url = 'git+https://example.invalid/moonstack.git' }
description = {
  summary = 'TDX quote and RA-TLS certificate verification for Lua apps (moonstack verifier)',
  license = 'Apache-2.0',
}
dependencies = { 'lua == 5.1', 'lua-cjson' }
test_dependencies = { 'busted', 'luassert', 'luacheck' }
external_dependencies = {
  OPENSSL = { header = 'openssl/evp.h', library = 'crypto' },
  SECP256K1 = { header = 'secp256k1.h', library = 'secp256k1' },
  LIBUV = { header = 'uv.h' }, -- headers only: the natives' shared runtime header names its types
}

-- Every native links the binding helpers (runtime/src/rt_util.c) and the stand-in for the
-- runtime's loop services (rockspecs/rt_standalone.c); a native also compiles the C of the natives
-- it calls (dcap parses quotes with tdx and checks keys with crypto; x509 uses crypto), so each
-- .so stands alone. A rockspec cannot run code: the lists are written out.
local INCDIRS = { 'runtime/include', 'runtime/src', 'native', '$(OPENSSL_INCDIR)',
  '$(SECP256K1_INCDIR)', '$(LIBUV_INCDIR)' }
local LIBDIRS = { '$(OPENSSL_LIBDIR)', '$(SECP256K1_LIBDIR)' }
local DEFINES = { '_GNU_SOURCE' }

build = {
  type = 'builtin',
  modules = {
    ['moonstack.native.crypto'] = {
      sources = {
        'runtime/src/rt_util.c',
        'rockspecs/rt_standalone.c',
        'native/crypto/crypto_aead.c',
        'native/crypto/crypto_curve25519.c',
        'native/crypto/crypto_dstack_env.c',
        'native/crypto/crypto_dstack_kdf.c',
        'native/crypto/crypto_dstack_sig.c',
        'native/crypto/crypto_hash.c',
        'native/crypto/crypto_k256.c',
        'native/crypto/crypto_lua.c',
        'native/crypto/crypto_lua_dstack.c',
        'native/crypto/crypto_lua_password.c',
        'native/crypto/crypto_mac_kdf.c',
        'native/crypto/crypto_p256.c',
        'native/crypto/crypto_password.c',
        'native/crypto/crypto_util.c',
      },
      libraries = { 'crypto', 'secp256k1', 'crypt' },
      incdirs = INCDIRS,
      libdirs = LIBDIRS,
      defines = DEFINES,
    },
    ['moonstack.native.x509'] = {
      sources = {
        'runtime/src/rt_util.c',
        'rockspecs/rt_standalone.c',
        'native/x509/x509_build.c',
        'native/x509/x509_der.c',
        'native/x509/x509_info.c',
        'native/x509/x509_key.c',
        'native/x509/x509_lua.c',
        'native/x509/x509_lua_cert.c',
        'native/x509/x509_verify.c',
        'native/crypto/crypto_aead.c',
        'native/crypto/crypto_curve25519.c',
        'native/crypto/crypto_dstack_env.c',
        'native/crypto/crypto_dstack_kdf.c',
        'native/crypto/crypto_dstack_sig.c',
        'native/crypto/crypto_hash.c',
        'native/crypto/crypto_k256.c',
        'native/crypto/crypto_lua.c',
        'native/crypto/crypto_lua_dstack.c',
        'native/crypto/crypto_lua_password.c',
        'native/crypto/crypto_mac_kdf.c',
        'native/crypto/crypto_p256.c',
        'native/crypto/crypto_password.c',
        'native/crypto/crypto_util.c',
      },
      libraries = { 'crypto', 'secp256k1', 'crypt' },
      incdirs = INCDIRS,
      libdirs = LIBDIRS,
      defines = DEFINES,
    },
    ['moonstack.native.tdx'] = {
      sources = {
        'runtime/src/rt_util.c',
        'rockspecs/rt_standalone.c',
        'runtime/src/rt_json.c',
        'native/tdx/tdx_common.c',
        'native/tdx/tdx_configfs_tsm.c',
        'native/tdx/tdx_eventlog.c',
        'native/tdx/tdx_guest_ioctl.c',
        'native/tdx/tdx_lua.c',
        'native/tdx/tdx_lua_eventlog.c',
        'native/tdx/tdx_lua_guest.c',
        'native/tdx/tdx_pck.c',
        'native/tdx/tdx_qgs.c',
        'native/tdx/tdx_quote.c',
        'native/tdx/tdx_rtmr.c',
        'native/tdx/tdx_runtime_event.c',
      },
      libraries = { 'crypto' },
      incdirs = INCDIRS,
      libdirs = LIBDIRS,
      defines = DEFINES,
    },
    ['moonstack.native.dcap'] = {
      sources = {
        'runtime/src/rt_util.c',
        'rockspecs/rt_standalone.c',
        'runtime/src/rt_json.c',
        'native/dcap/dcap_collateral.c',
        'native/dcap/dcap_json.c',
        'native/dcap/dcap_lua.c',
        'native/dcap/dcap_pki.c',
        'native/dcap/dcap_root.c',
        'native/dcap/dcap_tcb.c',
        'native/dcap/dcap_tcbinfo.c',
        'native/dcap/dcap_util.c',
        'native/dcap/dcap_verify.c',
        'native/tdx/tdx_common.c',
        'native/tdx/tdx_configfs_tsm.c',
        'native/tdx/tdx_eventlog.c',
        'native/tdx/tdx_guest_ioctl.c',
        'native/tdx/tdx_lua.c',
        'native/tdx/tdx_lua_eventlog.c',
        'native/tdx/tdx_lua_guest.c',
        'native/tdx/tdx_pck.c',
        'native/tdx/tdx_qgs.c',
        'native/tdx/tdx_quote.c',
        'native/tdx/tdx_rtmr.c',
        'native/tdx/tdx_runtime_event.c',
        'native/crypto/crypto_aead.c',
        'native/crypto/crypto_curve25519.c',
        'native/crypto/crypto_dstack_env.c',
        'native/crypto/crypto_dstack_kdf.c',
        'native/crypto/crypto_dstack_sig.c',
        'native/crypto/crypto_hash.c',
        'native/crypto/crypto_k256.c',
        'native/crypto/crypto_lua.c',
        'native/crypto/crypto_lua_dstack.c',
        'native/crypto/crypto_lua_password.c',
        'native/crypto/crypto_mac_kdf.c',
        'native/crypto/crypto_p256.c',
        'native/crypto/crypto_password.c',
        'native/crypto/crypto_util.c',
      },
      libraries = { 'crypto', 'secp256k1', 'crypt' },
      incdirs = INCDIRS,
      libdirs = LIBDIRS,
      defines = DEFINES,
    },
    ['moonstack.core.codec'] = 'lua/moonstack/core/codec.lua',
    ['moonstack.core.config'] = 'lua/moonstack/core/config.lua',
    ['moonstack.core.errors'] = 'lua/moonstack/core/errors.lua',
    ['moonstack.core.fs'] = 'lua/moonstack/core/fs.lua',
    ['moonstack.core.json'] = 'lua/moonstack/core/json.lua',
    ['moonstack.core.msgpack'] = 'lua/moonstack/core/msgpack.lua',
    ['moonstack.core.scale'] = 'lua/moonstack/core/scale.lua',
    ['moonstack.core.schema'] = 'lua/moonstack/core/schema.lua',
    ['moonstack.core.tables'] = 'lua/moonstack/core/tables.lua',
    ['moonstack.crypto'] = 'lua/moonstack/crypto/init.lua',
    ['moonstack.dcap'] = 'lua/moonstack/dcap/init.lua',
    ['moonstack.tdx.attestation'] = 'lua/moonstack/tdx/attestation.lua',
    ['moonstack.tdx.eventlog'] = 'lua/moonstack/tdx/eventlog.lua',
    ['moonstack.tdx.quote'] = 'lua/moonstack/tdx/quote.lua',
    ['moonstack.x509'] = 'lua/moonstack/x509/init.lua',
    ['moonstack.x509.profiles'] = 'lua/moonstack/x509/profiles.lua',
    ['moonstack.x509.ratls'] = 'lua/moonstack/x509/ratls.lua',
    ['moonstack.verifier'] = 'lua/moonstack/verifier/init.lua',
    ['moonstack.verifier.check'] = 'lua/moonstack/verifier/check.lua',
    ['moonstack.verifier.collateral'] = 'lua/moonstack/verifier/collateral.lua',
    ['moonstack.verifier.events'] = 'lua/moonstack/verifier/events.lua',
    ['moonstack.verifier.rules'] = 'lua/moonstack/verifier/rules.lua',
    ['moonstack.verifier.rules_eval'] = 'lua/moonstack/verifier/rules_eval.lua',
    ['moonstack.verifier.time'] = 'lua/moonstack/verifier/time.lua',
  },
}
