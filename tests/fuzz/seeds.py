# SPDX-License-Identifier: Apache-2.0
# Writes the seed corpora of the fuzz targets into corpus/<target>/ (committed; rerun after
# changing the fixtures): the captured ClientHellos of tests/fixtures/proxy_sni, PROXY protocol
# examples (spec examples, haproxy-like v2 with TLVs, LOCAL), and SNI grammar rows.
import os, struct

here = os.path.dirname(os.path.abspath(__file__))
fixtures = os.path.join(here, "..", "fixtures", "proxy_sni")

def put(target, name, data):
    d = os.path.join(here, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

for fn in sorted(os.listdir(fixtures)):
    if fn.endswith(".hex"):
        raw = bytes.fromhex(open(os.path.join(fixtures, fn)).read().strip())
        put("proxy_sni", fn[:-4], raw)
        put("proxy_sni", fn[:-4] + "_split", raw[:5] + raw[5:9])  # a prefix

SIG = b"\r\n\r\n\x00\r\nQUIT\n"
pp = {
    "v1_tcp4": b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
    "v1_tcp6": b"PROXY TCP6 2001:db8::1 ::ffff:10.0.0.2 0 65535\r\n",
    "v1_unknown": b"PROXY UNKNOWN\r\n",
    "v1_unknown_max": b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n",
    "v1_then_tls": b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n\x16\x03\x01\x00\x10",
    "v2_local": SIG + b"\x20\x00\x00\x00",
    "v2_tcp4": SIG + b"\x21\x11\x00\x0c" + bytes([192, 168, 0, 1, 10, 0, 0, 2]) + struct.pack(">HH", 56324, 443),
    "v2_tcp6_tlv": SIG + b"\x21\x21" + struct.pack(">H", 36 + 7 + 3 + 9)
        + bytes.fromhex("20010db8000000000000000000000001") + bytes(15) + b"\x01"
        + struct.pack(">HH", 80, 8080) + b"\x03\x00\x04\xde\xad\xbe\xef" + b"\x04\x00\x00"
        + b"\x02\x00\x06a.b.cd",
    "v2_unspec": SIG + b"\x21\x00\x00\x04abcd",
}
for k, v in pp.items():
    put("proxy_pp", k, v)

bases = b"example.com\n*.dstack.example.org."
rows = [b"abc.example.com", b"abc-8080.example.com", b"abc-443s.example.com",
        b"abc-50051g.example.com", b"abc-gs.example.com", b"abc-sg.example.com",
        b"abc-1-2.example.com", b"-80.example.com", b"health.example.com",
        b"gateway-80.example.com", b"localhost-8080s.example.com", b"app.custom.test",
        b"0123456789abcdef0123456789abcdef01234567-443s.dstack.example.org"]
for i, r in enumerate(rows):
    put("proxy_route", "row%02d" % i, bytes([1 | (2 << 1)]) + bases + b"\n" + r)
