#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Every build type compiles (warnings are errors only in development builds: a Release build at
# -O3 met -Wformat-truncation once), and `make install PREFIX=DIR` after a build installs into
# DIR whatever prefix the build was configured with.
set -u
src=$(cd "$(dirname "$0")/../.." && pwd)
passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok - $1"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $1"; [ $# -gt 1 ] && printf '  %s\n' "$2"; }
t=$(mktemp -d "${TMPDIR:-/tmp}/moonstack-build.XXXXXX")
trap 'rm -rf "$t"' EXIT

cmake -S "$src" -B "$t/rel" -DCMAKE_BUILD_TYPE=Release -DMOONSTACK_TESTS=OFF \
  -DCMAKE_INSTALL_PREFIX="$t/configured" >"$t/cfg.log" 2>&1
werror=$(sed -n 's/^MOONSTACK_WERROR:BOOL=//p' "$t/rel/CMakeCache.txt")
[ "$werror" = OFF ] && ok "Release: warnings are not errors" || not_ok "Release: warnings are not errors" "$werror"
if cmake --build "$t/rel" -j "$(nproc)" >"$t/build.log" 2>&1; then ok "a Release build compiles"; else
  not_ok "a Release build compiles" "$(grep -E 'error|warning' "$t/build.log" | head -5)"; fi
warnings=$(grep -c 'warning:' "$t/build.log")
[ "$warnings" -eq 0 ] && ok "a Release build has no warnings" || \
  not_ok "a Release build has no warnings" "$(grep 'warning:' "$t/build.log" | head -3)"
cmake -S "$src" -B "$t/dev" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOONSTACK_TESTS=OFF >/dev/null 2>&1
werror=$(sed -n 's/^MOONSTACK_WERROR:BOOL=//p' "$t/dev/CMakeCache.txt")
[ "$werror" = ON ] && ok "RelWithDebInfo: warnings are errors" || not_ok "RelWithDebInfo: warnings are errors" "$werror"

# make install PREFIX=... after a build configured with another prefix (deps are present)
if make -C "$src" install BUILD="$t/rel" PREFIX="$t/prefix" >"$t/install.log" 2>&1 &&
  [ -x "$t/prefix/bin/moonstack" ] && [ ! -e "$t/configured/bin/moonstack" ]; then
  ok "make install PREFIX=DIR installs into DIR"
else
  not_ok "make install PREFIX=DIR installs into DIR" "$(tail -3 "$t/install.log"; ls -R "$t/prefix" 2>&1 | head -3)"
fi
"$t/prefix/bin/moonstack" version >/dev/null 2>&1 && ok "the installed binary runs" || not_ok "the installed binary runs"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
