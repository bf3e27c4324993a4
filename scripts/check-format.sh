#!/usr/bin/env bash
# Lint: every C file under runtime/, native/ and tests/ must match .clang-format.
set -euo pipefail
clang_format=${1:-clang-format}
mapfile -t files < <(git ls-files 'runtime/*.c' 'runtime/*.h' 'native/*.c' 'native/*.h' 'tests/*.c' 'rockspecs/*.c' 2>/dev/null || true)
if [ ${#files[@]} -eq 0 ]; then
  mapfile -t files < <(find runtime native tests rockspecs -name '*.[ch]' 2>/dev/null)
fi
"$clang_format" --dry-run --Werror "${files[@]}"
echo "clang-format: ${#files[@]} files clean"
