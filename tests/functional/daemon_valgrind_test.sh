#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The daemon functional run again under valgrind: starting and stopping a daemon that served
# HTTP, a websocket and the REPL leaks nothing and touches no invalid memory.
if [ "${MOONSTACK_SANITIZE:-0}" = 1 ]; then
  echo "1 passed, 0 failed (valgrind cannot run an ASan binary; the plain build runs this test)"
  exit 0
fi
command -v valgrind >/dev/null || { echo "0 passed, 1 failed: valgrind is not installed"; exit 1; }
MOONSTACK_VALGRIND=1 exec bash "$(dirname "$0")/daemon_test.sh"
