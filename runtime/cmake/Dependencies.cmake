# SPDX-License-Identifier: Apache-2.0
# Finds every dependency of the runtime. luv's and cjson's .pc files are broken on Debian
# (they require a lua5.1.pc that does not exist), so those two are found by path.
find_package(PkgConfig REQUIRED)
pkg_check_modules(LUAJIT REQUIRED IMPORTED_TARGET luajit>=2.1)
pkg_check_modules(LIBUV REQUIRED IMPORTED_TARGET libuv>=1.44)
pkg_check_modules(OPENSSL REQUIRED IMPORTED_TARGET openssl>=3.0)
pkg_check_modules(LWS REQUIRED IMPORTED_TARGET libwebsockets>=4.1)
pkg_check_modules(LIBEDIT REQUIRED IMPORTED_TARGET libedit)
pkg_check_modules(SECP256K1 REQUIRED IMPORTED_TARGET libsecp256k1)
# The recovery module (recoverable ECDSA, public-key recovery) must be built in.
find_path(SECP256K1_RECOVERY_H secp256k1_recovery.h PATHS ${SECP256K1_INCLUDE_DIRS} REQUIRED)

# Keep LuaJIT's headers first: /usr/include/lua5.1 must never shadow them.
find_path(LUV_INCLUDE_DIR luv/luv.h PATHS /usr/include/lua5.1 NO_DEFAULT_PATH REQUIRED)
find_path(CJSON_INCLUDE_DIR lua-cjson.h PATHS /usr/include/lua5.1 NO_DEFAULT_PATH REQUIRED)
find_library(LUV_LIBRARY NAMES lua5.1-luv REQUIRED)
find_library(CJSON_LIBRARY NAMES lua5.1-cjson REQUIRED)

# The libuv event-lib plugin is dlopen()ed by lws at context creation; fail at configure time
# rather than at the first listen.
find_file(LWS_EVLIB_UV NAMES libwebsockets-evlib_uv.so
  PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE} /usr/lib /usr/local/lib REQUIRED)

find_program(LUAJIT_EXECUTABLE NAMES luajit REQUIRED)
