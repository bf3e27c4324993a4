#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The functional tests' temporary directories (lib.sh tmpdir, which runs in a subshell) are
# removed when a test exits, however it exits: they hold root key files.
source "$(dirname "$0")/lib.sh"

t=$(tmpdir)
probe="$t/probe.sh"
cat >"$probe" <<SH
source '$MOONSTACK_SRC/tests/functional/lib.sh'
a=\$(tmpdir); b=\$(tmpdir)
echo secret >"\$a/root-ca.key"
echo "\$a \$b"
exit \${1:-0}
SH
for how in 0 1; do
  dirs=$(bash "$probe" "$how")
  left=0
  for d in $dirs; do [ -e "$d" ] && left=$((left + 1)); done
  check "no temp directory left after exit $how" 0 "$left"
done
finish
