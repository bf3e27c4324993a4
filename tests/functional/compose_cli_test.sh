#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `moonstack compose`: hash and app-id reproduce the atlas vectors (a372f45a…, 11899cdb…) as
# stored, and --normalize gives the same value for a re-laid-out copy, equal to the official
# SDK's getComposeHash (@phala/dstack-sdk 0.5.8); `new` writes the bytes upstream's vmm-cli.py
# compose writes (Python's json.dumps(indent=4, ensure_ascii=False) of the same fields),
# deterministically, and refuses bad options naming them; `lint` prints findings naming the
# field (text and --json), exits 1 on an error finding, 0 on the examples and the vectors, 2 on
# usage and parse errors (the YAML line named).
source "$(dirname "$0")/lib.sh"

t=$(tmpdir)
V=${MOONSTACK_VECTORS:-$MOONSTACK_SRC/../shared/vectors}
[ -d "$V" ] || V=/work/shared/vectors
ms() { "$MOONSTACK" compose "$@"; }

# ---- hash / app-id on the vectors ----
for pair in "atlas-default-app-compose.json a372f45a6f60cacfdf6be794a0729e3fb79c43b190db2e38b91544d149d9f6b5" \
            "atlas-vllm-app-compose.json 11899cdb6d8e0022298eb89acc347faafb8720488428c965542ff13b47949fa4"; do
  set -- $pair
  check "compose hash $1" "$2" "$(ms hash "$V/derived/$1")"
  check "compose app-id $1" "${2:0:40}" "$(ms app-id "$V/derived/$1")"
  check "compose hash --normalize $1 (already normalized)" "$2" "$(ms hash --normalize "$V/derived/$1")"
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); open(sys.argv[2],"w").write(json.dumps(d, indent=4, ensure_ascii=False))' \
    "$V/derived/$1" "$t/pretty-$1"
  check "compose hash of a re-laid-out copy: the bytes as stored" \
    "$(sha256sum "$t/pretty-$1" | cut -c1-64)" "$(ms hash "$t/pretty-$1")"
  check "compose hash --normalize of the re-laid-out copy = the vector" "$2" "$(ms hash --normalize "$t/pretty-$1")"
  check "compose app-id --normalize of the re-laid-out copy" "${2:0:40}" "$(ms app-id --normalize "$t/pretty-$1")"
done
out=$(ms hash "$t/none.json" 2>&1); rc=$?
check "hash of a missing file: exit 2" 2 $rc
check_match "hash of a missing file names it" 'none.json' "$out"
printf '{"a":' >"$t/bad.json"
out=$(ms hash --normalize "$t/bad.json" 2>&1); rc=$?
check "hash --normalize of bad JSON: exit 2" 2 $rc

# ---- new: vmm-cli's bytes ----
cat >"$t/dc.yaml" <<'YAML'
# café	tab
services:
  web:
    image: nginx@sha256:eee5eae48e79b2e75178328c7c585b89d676eaae616f03f9a1813aaed820745a
    environment:
      TOKEN: ${TOKEN}
    ports:
      - "127.0.0.1:8080:80"
YAML
printf 'TOKEN=abc\n# comment\nOTHER="x y"\n' >"$t/app.env"
printf '#!/bin/sh\necho pre "launch"\n' >"$t/pre.sh"
ms new "$t/dc.yaml" --name "näme" --kms --gateway --env-file "$t/app.env" --prelaunch-script "$t/pre.sh" \
  --key-provider-id 0x00ff -o "$t/app-compose.json" >"$t/new.out" 2>&1
check "compose new: exit 0" 0 $?
python3 - "$t" >"$t/upstream.json" <<'PY'
import json, sys
t = sys.argv[1]
envs = ["TOKEN", "OTHER"]
app = {"manifest_version": 2, "name": "näme", "runner": "docker-compose",
       "docker_compose_file": open(t + "/dc.yaml", "rb").read().decode("utf-8"),
       "kms_enabled": True, "gateway_enabled": True, "local_key_provider_enabled": False,
       "key_provider_id": "00ff", "public_logs": False, "public_sysinfo": False,
       "allowed_envs": envs, "no_instance_id": False, "secure_time": False,
       "pre_launch_script": open(t + "/pre.sh", "rb").read().decode("utf-8")}
sys.stdout.write(json.dumps(app, indent=4, ensure_ascii=False))
PY
if cmp -s "$t/upstream.json" "$t/app-compose.json"; then ok "compose new writes vmm-cli.py's bytes"; else
  not_ok "compose new writes vmm-cli.py's bytes" "$(diff "$t/upstream.json" "$t/app-compose.json" | head -10)"; fi
h=$(sha256sum "$t/app-compose.json" | cut -c1-64)
check_match "compose new prints the compose hash" "Compose hash: $h" "$(cat "$t/new.out")"
check "compose hash of the new file" "$h" "$(ms hash "$t/app-compose.json")"
ms new "$t/dc.yaml" --name "näme" --kms --gateway --env-file "$t/app.env" --prelaunch-script "$t/pre.sh" \
  --key-provider-id 0x00ff -o "$t/again.json" >/dev/null 2>&1
check "compose new is deterministic" "$h" "$(ms hash "$t/again.json")"
out=$(ms new "$t/dc.yaml" --name x --env-file "$t/app.env" -o "$t/x.json" 2>&1); rc=$?
check "compose new --env-file without --kms: exit 2" 2 $rc
check_match "  names --env-file and --kms" '--env-file needs --kms' "$out"
out=$(ms new "$t/dc.yaml" -o "$t/x.json" 2>&1); rc=$?
check "compose new without --name: exit 2" 2 $rc
check_match "  names --name" '--name' "$out"
out=$(ms new "$t/dc.yaml" --name x --key-provider-id zz -o "$t/x.json" 2>&1); rc=$?
check "compose new --key-provider-id not hex: exit 2" 2 "$rc"
ms new "$t/dc.yaml" --name x --no-public-tcbinfo --swap 2 --event-log-version 2 -o "$t/y.json" >/dev/null
check "compose new --no-public-tcbinfo / --swap / --event-log-version" "False 2097152 2" \
  "$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["public_tcbinfo"], d["swap_size"], d["event_log_version"])' "$t/y.json")"

# ---- the official SDK agrees on the normalized hash ----
if install_dstack_sdk; then
  for f in "$t/app-compose.json" "$t/pretty-atlas-vllm-app-compose.json"; do
    sdk=$(node -e 'const {getComposeHash}=require(process.argv[1]); const fs=require("fs");
      process.stdout.write(getComposeHash(JSON.parse(fs.readFileSync(process.argv[2],"utf8")), true))' \
      "$SDK_CACHE/node_modules/@phala/dstack-sdk/dist/get-compose-hash.js" "$f" 2>&1)
    check "SDK getComposeHash = compose hash --normalize ($(basename "$f"))" "$sdk" "$(ms hash --normalize "$f")"
  done
fi

# ---- lint ----
for a in hello sdk; do
  out=$(ms lint "$MOONSTACK_SRC/examples/apps/$a/docker-compose.yaml"); rc=$?
  check "lint examples/apps/$a: exit 0" 0 $rc
  check_match "  the waived image-not-pinned is reported as suppressed" 'image-not-pinned .*\[suppressed: ' "$out"
  ms new "$MOONSTACK_SRC/examples/apps/$a/docker-compose.yaml" --name $a --kms --gateway \
    --env-file "$MOONSTACK_SRC/examples/apps/$a/app.env" -o "$t/$a.json" >/dev/null
  ms lint "$t/$a.json" >/dev/null
  check "lint the app-compose of examples/apps/$a: exit 0" 0 $?
done
for v in atlas-default-app-compose.json atlas-vllm-app-compose.json; do
  ms lint "$V/derived/$v" >/dev/null
  check "lint $v: exit 0 (warnings only)" 0 $?
done
cat >"$t/bad.yaml" <<'YAML'
services:
  web:
    image: nginx:latest
    privileged: true
    network_mode: host
    environment:
      - DB_PASSWORD=hunter2
    volumes:
      - /var/run/docker.sock:/var/run/docker.sock
    ports:
      - "8080:80"
YAML
out=$(ms lint "$t/bad.yaml"); rc=$?
check "lint a bad docker-compose: exit 1" 1 $rc
check_match "  image-not-pinned names the field and line" 'error image-not-pinned services\.web\.image \(line 3\)' "$out"
check_match "  privileged-container" 'error privileged-container services\.web\.privileged \(line 4\)' "$out"
check_match "  network-host" 'error network-host services\.web\.network_mode' "$out"
check_match "  secret-in-environment" 'error secret-in-environment services\.web\.environment\[0\]' "$out"
check_match "  docker-socket" 'error docker-socket services\.web\.volumes\[0\]' "$out"
check_match "  port-all-interfaces" 'warning port-all-interfaces services\.web\.ports\[0\]' "$out"
check_match "  each finding has a fix" '^    fix: ' "$out"
check_match "  summary" '5 error\(s\), 1 warning\(s\)' "$out"
js=$(ms lint --json "$t/bad.yaml"); rc=$?
check "lint --json: exit 1" 1 $rc
check "lint --json: findings, counts, fields" "docker-compose 5 1 False services.web.image error" \
  "$(printf '%s' "$js" | python3 -c 'import json,sys; d=json.load(sys.stdin); f=d["findings"][0]; print(d["kind"], d["counts"]["error"], d["counts"]["warning"], d["ok"], f["field"], f["severity"])')"
python3 - "$t/app-compose.json" "$t/bad-app.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d.update(no_instance_id=True, public_logs=True, allowed_envs=["OTHER"], init_script="echo hi")
json.dump(d, open(sys.argv[2], "w"))
PY
js=$(ms lint --json "$t/bad-app.json"); rc=$?
check "lint a bad app-compose: exit 1" 1 $rc
check "  the app-compose findings name their fields" \
  "allowed_envs docker_compose_file.services.web.environment.TOKEN init_script no_instance_id public_logs secure_time" \
  "$(printf '%s' "$js" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(" ".join(sorted(set(f["field"] for f in d["findings"] if f["field"] not in ("public_tcbinfo","pre_launch_script")))))')"
printf 'services:\n  web:\n    image: &a x\n' >"$t/anchor.yaml"
out=$(ms lint "$t/anchor.yaml" 2>&1); rc=$?
check "lint YAML it does not understand: exit 2" 2 $rc
check_match "  names the line" 'anchor\.yaml: docker-compose: line 3: anchors' "$out"
out=$(ms lint "$t/app.env" 2>&1); rc=$?
check "lint a file that is not a compose: exit 2" 2 $rc
out=$(ms lint 2>&1); rc=$?
check "lint without FILE: exit 2" 2 $rc
ms --help >/dev/null
check "compose --help: exit 0" 0 $?
finish
