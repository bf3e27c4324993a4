#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `moonstack mr` (dstack-mr, spec kms-vmm-gateway.md §7):
#  * lite path on dstack's verifier fixture tdx-lite-getquote.json: text and --json give
#    exactly that QUOTE's MRTD and RTMR0-2 and the vm_config's os_image_hash;
#  * the KMS OS-image gate (moonstack.kms.image) allows that quote's boot with the --json file
#    as <hash>.json and with --register, and denies a changed RTMR1; a second --register of
#    the same values adds nothing;
#  * full path on a crafted image (TDVF firmware, PE kernel, initrd): the QEMU-version and
#    memory rules of §7.1/§7.5 (MRTD by page-add order only, RTMR1 equal for 2G and >= 2.75G,
#    RTMR2 independent of both), os_image_hash = digest.txt;
#  * MRTD equals a second (python3) implementation of §7.2/§7.3 on the crafted firmware;
#    measurements.json (moonstack.mr.report, what image build writes) agrees with the command;
#  * the Authenticode digest equals osslsigncode's on the kernel signed with SHA-384;
#  * a real TDVF (Debian's edk2 OVMF.fd): its sections are dstack's layout (§9.9), its MRTDs
#    equal the python3 implementation's, and the full path's RTMR0 at 2 GiB with the fixture's
#    ACPI digests equals the real quote's RTMR0;
#  * errors name the bad flag or file (exit 2 usage, 1 measurement).
source "$(dirname "$0")/lib.sh"
need_tools osslsigncode openssl python3
V=${MOONSTACK_VECTORS:-$MOONSTACK_SRC/../shared/vectors}
F=$V/dstack/verifier/tdx-lite-getquote.json
if [ ! -f "$F" ]; then
  not_ok "test vectors found" "no $F (set MOONSTACK_VECTORS)"
  finish
  exit 1
fi
FIX="$MOONSTACK_SRC/tests/functional/fixtures/mr_image.lua"
dir=$(tmpdir)

run() { # WANT_RC ARGS...: stdout in $dir/out, stderr in $dir/err
  local want=$1
  shift
  "$MOONSTACK" "$@" >"$dir/out" 2>"$dir/err"
  rc=$?
  if [ "$rc" != "$want" ]; then
    not_ok "moonstack $* exits $want" "exit $rc; stderr: $(head -c 400 "$dir/err")"
    return 1
  fi
}
line() { sed -n "s/^$1: //p" "$dir/out"; }
jfield() { "$MOONSTACK" -e "local j=require('cjson').decode(io.open('$1'):read('*a')) print(j['$2'])"; }

mapfile -t Q < <("$MOONSTACK" run "$FIX" regs "$F")
check "the fixture quote has 4 registers" 4 "${#Q[@]}"
HASH=e6f5cfec20c02e7b97baa213d0f718020b55e040172d90ccbcb946d56c8b09db

# 1. lite path, text
if run 0 mr --vm-config "$F" --event-log "$F"; then
  check "lite text: MRTD = quote" "${Q[0]}" "$(line MRTD)"
  check "lite text: RTMR0 = quote" "${Q[1]}" "$(line RTMR0)"
  check "lite text: RTMR1 = quote" "${Q[2]}" "$(line RTMR1)"
  check "lite text: RTMR2 = quote" "${Q[3]}" "$(line RTMR2)"
  check "lite text: os_image_hash" "$HASH" "$(line os_image_hash)"
fi

# 2. --json, read by the KMS gate
mkdir -p "$dir/m1" "$dir/m2"
if run 0 mr --vm-config "$F" --event-log "$F" --json; then
  cp "$dir/out" "$dir/m1/$HASH.json"
  check "json: mrtd" "${Q[0]}" "$(jfield "$dir/out" mrtd)"
  check "json: rtmr0" "${Q[1]}" "$(jfield "$dir/out" rtmr0)"
  check "json: rtmr1" "${Q[2]}" "$(jfield "$dir/out" rtmr1)"
  check "json: rtmr2" "${Q[3]}" "$(jfield "$dir/out" rtmr2)"
  check "json: os_image_hash" "$HASH" "$(jfield "$dir/out" os_image_hash)"
  check "gate allows the quote's boot with the --json file" allowed \
    "$("$MOONSTACK" run "$FIX" gate "$dir/m1" "$HASH" "${Q[@]}")"
  check_match "gate denies another RTMR1" '^denied: EIMAGE: the boot measurements' \
    "$("$MOONSTACK" run "$FIX" gate "$dir/m1" "$HASH" "${Q[0]}" "${Q[1]}" "${Q[3]}" "${Q[3]}")"
fi
if run 0 mr --vm-config "$F" --event-log "$F" --register "$dir/m2"; then
  check_match "register: added" "added $dir/m2/$HASH.json" "$(cat "$dir/err")"
  check "gate allows the quote's boot with --register" allowed \
    "$("$MOONSTACK" run "$FIX" gate "$dir/m2" "$HASH" "${Q[@]}")"
  run 0 mr --vm-config "$F" --event-log "$F" --register "$dir/m2" &&
    check_match "register again: present" "present $dir/m2/$HASH.json" "$(cat "$dir/err")"
fi
run 0 mr --vm-config "$F" && check "lite without ACPI digests: RTMR0 unknown" \
  "(unknown: needs --event-log or --acpi-digests)" "$(line RTMR0)"

# 3. full path on a crafted image
img=$dir/img
mkdir -p "$img"
"$MOONSTACK" run "$FIX" image "$img"
A=$(printf 'aa%.0s' $(seq 48)),$(printf 'bb%.0s' $(seq 48)),$(printf 'cc%.0s' $(seq 48))
measure() { # OUTNAME ARGS...
  local name=$1
  shift
  run 0 mr --image "$img" --acpi-digests "$A" "$@" && cp "$dir/out" "$dir/$name"
}
val() { sed -n "s/^$2: //p" "$dir/$1"; }
measure m91 --qemu-version 9.1.0
measure mdef
measure m82 --qemu-version 8.2.2
measure m91two --qemu-version 9.1.0 --two-pass-add-pages true
measure m1g -m 1G
measure m3g -m 3G
measure m2g --memory 2147483648 --cpus 4
check "default QEMU is 9.1.0" "$(cat "$dir/m91")" "$(cat "$dir/mdef")"
check_match "MRTD is 48 bytes of hex" '^[0-9a-f]{96}$' "$(val m91 MRTD)"
if [ "$(val m91 MRTD)" != "$(val m82 MRTD)" ]; then ok "8.x adds pages in two passes (MRTD differs)"
else not_ok "8.x adds pages in two passes (MRTD differs)"; fi
check "--two-pass-add-pages true = 8.x order" "$(val m82 MRTD)" "$(val m91two MRTD)"
check "RTMR1 does not depend on the QEMU version" "$(val m91 RTMR1)" "$(val m82 RTMR1)"
if [ "$(val m1g RTMR1)" != "$(val m91 RTMR1)" ]; then ok "1G patches the kernel differently (RTMR1)"
else not_ok "1G patches the kernel differently (RTMR1)"; fi
check "RTMR1 equal for 2G and 3G (>= 0xB0000000)" "$(val m91 RTMR1)" "$(val m3g RTMR1)"
if [ "$(val m1g RTMR0)" != "$(val m91 RTMR0)" ]; then ok "the TD HOB follows the RAM size (RTMR0)"
else not_ok "the TD HOB follows the RAM size (RTMR0)"; fi
check "RTMR2 does not depend on the RAM" "$(val m91 RTMR2)" "$(val m1g RTMR2)"
check "CPUs change nothing given the ACPI digests" "$(cat "$dir/m91")" "$(cat "$dir/m2g")"
check "os_image_hash = digest.txt" "$(cat "$img/digest.txt")" "$(val m91 os_image_hash)"
# MRTD by a second implementation of §7.2/§7.3 (python3, written from the spec text)
cat >"$dir/mrtd.py" <<'PY'
import hashlib, struct, sys
fw = open(sys.argv[1], 'rb').read()
def guid(g):
    p = g.split('-')
    return b''.join(bytes.fromhex(x)[::-1] if i < 3 else bytes.fromhex(x) for i, x in enumerate(p))
end = len(fw) - 32
assert fw[end - 16:end] == guid('96b582de-1fb2-45f7-baea-a366c55a082d')
tlen = struct.unpack_from('<H', fw, end - 18)[0]
table = fw[end - 18 - tlen:end - 18]
pos = len(table)
while True:
    size = struct.unpack_from('<H', table, pos - 18)[0]
    if table[pos - 16:pos] == guid('e47a6535-984a-4798-865e-4685a7bf8ec2'):
        dist = struct.unpack_from('<I', table, pos - 22)[0]
        break
    pos -= size
d = len(fw) - dist
assert fw[d:d + 4] == b'TDVF'
n = struct.unpack_from('<I', fw, d + 12)[0]
secs = [struct.unpack_from('<IIQQII', fw, d + 16 + 32 * i) for i in range(n)]
out = []
for two in (True, False):
    h = hashlib.sha384()
    for off, raw, addr, size, typ, attr in secs:
        def add(p):
            if not attr & 2:
                h.update(b'MEM.PAGE.ADD'.ljust(16, b'\0') + struct.pack('<Q', addr + p * 4096) + bytes(104))
        def ext(p):
            if attr & 1:
                for i in range(16):
                    h.update(b'MR.EXTEND'.ljust(16, b'\0') + struct.pack('<Q', addr + p * 4096 + i * 256) + bytes(104))
                    h.update(fw[off + p * 4096 + i * 256:off + p * 4096 + (i + 1) * 256])
        pages = size // 4096
        if two:
            for p in range(pages): add(p)
            for p in range(pages): ext(p)
        else:
            for p in range(pages): add(p); ext(p)
    out.append(h.hexdigest())
print(' '.join(out))
PY
mrtd_py=$(python3 - "$img/ovmf.fd" <"$dir/mrtd.py")
check "MRTD (two-pass, single-pass) = an independent python3 implementation" "$mrtd_py" \
  "$(val m82 MRTD) $(val m91 MRTD)"

# measurements.json of the same image (what image build writes) agrees with the command
rep=$("$MOONSTACK" -e "local r=require('moonstack.mr.report').write('$img').tdx
  print(r.measurable, r.mrtd.two_pass, r.mrtd.single_pass, r.rtmr1, r.rtmr2)")
check "measurements.json: measurable, MRTDs, RTMR1 (2G), RTMR2" \
  "true	$(val m82 MRTD)	$(val m91 MRTD)	$(val m91 RTMR1)	$(val m91 RTMR2)" "$rep"
check "measurements.json: os_image_hash" "$(cat "$img/digest.txt")" \
  "$(jfield "$img/measurements.json" os_image_hash)"
rm -f "$img/measurements.json"
run 0 mr --image "$img" && check "no ACPI digests: RTMR0 unknown, MRTD known" \
  "$(val m91 MRTD)" "$(line MRTD)"

# --acpi-tables: the digests of a tables blob (crafted: no dstack-acpi-tables here) feed RTMR0
"$MOONSTACK" -e "local b=require('moonstack.mr.bytes')
  local function t(s, n) return s .. b.le(n, 4) .. ('\\0'):rep(n - 8) end
  local blob = t('DSDT', 64) .. t('FACP', 244) .. t('APIC', 120) .. t('MCFG', 60) .. t('WAET', 40) .. t('RSDT', 52)
  io.open('$dir/tables.bin', 'wb'):write(blob)
  local d = require('moonstack.mr.acpi').digests(blob)
  io.open('$dir/tables.dig', 'w'):write(b.hex(d.loader) .. ',' .. b.hex(d.rsdp) .. ',' .. b.hex(d.tables))"
run 0 mr --image "$img" --acpi-tables "$dir/tables.bin" && cp "$dir/out" "$dir/mtab"
run 0 mr --image "$img" --acpi-digests "$(cat "$dir/tables.dig")" &&
  check "--acpi-tables = --acpi-digests of its digests" "$(val mtab RTMR0)" "$(line RTMR0)"
check_match "--acpi-tables gives RTMR0" '^[0-9a-f]{96}$' "$(val mtab RTMR0)"

# 4. Authenticode against osslsigncode
( cd "$dir" && openssl req -x509 -newkey rsa:2048 -nodes -keyout k.pem -out c.pem -subj /CN=mr-test \
  -days 2 >/dev/null 2>&1 && osslsigncode sign -h sha384 -certs c.pem -key k.pem -in "$img/bzImage" \
  -out signed.efi >/dev/null 2>&1 )
want=$(osslsigncode verify -in "$dir/signed.efi" 2>/dev/null | sed -n 's/^Calculated message digest *: *\([0-9A-F]*\).*/\1/p' \
  | tr 'A-F' 'a-f')
check_match "osslsigncode computed a SHA-384 digest" '^[0-9a-f]{96}$' "$want"
check "Authenticode = osslsigncode's" "$want" "$("$MOONSTACK" run "$FIX" authenticode "$dir/signed.efi")"

# 4b. a real TDVF: Debian's edk2 build (package ovmf, /usr/share/ovmf/OVMF.fd) carries TDVF
# metadata. Its sections must parse into the layout of spec §9.9 (dstack's OVMF), its MRTDs must
# equal the python3 implementation's, and the full path over it, at the fixture VM's 2 GiB with
# the fixture's ACPI digests, must give the real quote's RTMR0.
OVMF=${MOONSTACK_OVMF:-/usr/share/ovmf/OVMF.fd}
if [ -f "$OVMF" ]; then
  real="$dir/real"
  mkdir -p "$real"
  cp "$img/metadata.json" "$img/bzImage" "$img/initramfs.cpio.gz" "$real/"
  cp "$OVMF" "$real/ovmf.fd"
  secs=$("$MOONSTACK" -e "local t=require('moonstack.mr.tdvf').parse(io.open('$real/ovmf.fd','rb'):read('*a'))
    local o={} for _,s in ipairs(t.sections) do
    o[#o+1]=string.format('%x/%x/%d/%d', s.mem_addr, s.mem_size, s.type, s.attributes) end
    print(table.concat(o,' '))")
  check "edk2 OVMF.fd: TDVF sections (BFV, CFV, TEMP_MEM, TEMP_MEM, TD_HOB, TEMP_MEM)" \
    "ffe20000/1e0000/0/1 ffe00000/20000/1/0 810000/10000/3/0 80b000/2000/3/0 809000/2000/2/0 800000/6000/3/0" \
    "$secs"
  if run 0 mr --image "$real" -m 2G --qemu-version 8.2.2 --event-log "$F"; then
    check "edk2 OVMF.fd: full-path RTMR0 at 2G = the real quote's RTMR0" "${Q[1]}" "$(line RTMR0)"
    m82=$(line MRTD)
    run 0 mr --image "$real" --qemu-version 9.1.0 --event-log "$F" &&
      check "edk2 OVMF.fd: MRTD (two-pass, single-pass) = the python3 implementation" \
        "$(python3 - "$real/ovmf.fd" <"$dir/mrtd.py")" "$m82 $(line MRTD)"
  fi
else
  not_ok "Debian's OVMF.fd is installed (package ovmf)" "no $OVMF"
fi

# 5. errors name the flag or the file
err_case() { # NAME WANT_RC PATTERN ARGS...
  local name=$1 want=$2 pat=$3
  shift 3
  run "$want" "$@" && check_match "$name" "$pat" "$(cat "$dir/err")"
}
err_case "bad --memory" 2 '--memory 2X' mr --image "$img" --memory 2X
err_case "bad --cpus" 2 '--cpus x' mr --image "$img" --cpus x
err_case "bad --pic" 2 '--pic maybe' mr --image "$img" --pic maybe
err_case "bad --acpi-digests" 2 '--acpi-digests' mr --image "$img" --acpi-digests 00,11
err_case "--swtpm unsupported" 2 '--swtpm' mr --image "$img" --swtpm
err_case "old QEMU" 1 'qemu_version 7.2.0 is unsupported' mr --image "$img" --qemu-version 7.2.0
err_case "neither --image nor --vm-config" 2 'give --image DIR or --vm-config' mr
err_case "unknown flag" 2 "unknown option '--cpu-count'" mr --image "$img" --cpu-count 2
err_case "missing image" 1 "$dir/nope/metadata.json" mr --image "$dir/nope"
err_case "--json needs RTMR0" 1 'RTMR0 needs the ACPI digests' mr --image "$img" --json
err_case "bad --acpi-tables" 2 "--acpi-tables $img/metadata.json: no DSDT table" mr --image "$img" \
  --acpi-tables "$img/metadata.json"
err_case "bad --event-log" 2 "--event-log $img/metadata.json" mr --image "$img" \
  --event-log "$img/metadata.json"
head -c 65536 /dev/zero >"$img/ovmf.fd"
err_case "not a TDVF firmware" 1 'not a TDVF image' mr --image "$img"
finish
