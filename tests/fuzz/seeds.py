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

# ---- M13: the attestation parsers (real inputs from /work/shared/vectors, copied here) ----
import json, re, subprocess, tempfile

vectors = os.environ.get("MOONSTACK_VECTORS", "/work/shared/vectors")

def vec(rel):
    with open(os.path.join(vectors, rel), "rb") as f:
        return f.read()

quotes = {"tdx_v4": vec("dcap-qvl/tdx_quote"), "sgx_v3": vec("dcap-qvl/sgx_quote"),
          "tdx_sim": vec("derived/simulator-quote.bin"),
          "tdx_tappd": bytes.fromhex(vec("dcap-qvl/quote-from-tappd.hex").decode().strip())}
for k, v in quotes.items():
    put("tdx_quote", k, v)
put("tdx_quote", "tdx_v4_header", quotes["tdx_v4"][:48])

def ccel_trim(raw):
    end = len(raw)
    while end > 0 and raw[end - 1] == 0xFF:
        end -= 1
    return raw[:end + 8]  # the log and the start of the 0xFF fill

put("tdx_ccel", "ccel", ccel_trim(vec("dstack/cc-eventlog/ccel.bin")))
put("tdx_ccel", "tpm_eventlog", vec("dstack/cc-eventlog/tpm_eventlog.bin")[:16384])

coll = json.loads(vec("dcap-qvl/tdx_quote_collateral.json"))
put("dcap_json", "collateral_tdx", b"\x00" + vec("dcap-qvl/tdx_quote_collateral.json"))
put("dcap_json", "collateral_sgx", b"\x00" + vec("dcap-qvl/sgx_quote_collateral.json"))
put("dcap_json", "tcb_info_tdx", b"\x01" + coll["tcb_info"].encode())
put("dcap_json", "qe_identity_tdx", b"\x02" + coll["qe_identity"].encode())
put("dcap_json", "json_small", b"\x03" + b'{"a":[1,-2.5e3,true,null,"\\u00e9\\ud83d\\ude00"],"b":{}}')

pems = re.findall(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n?", quotes["tdx_v4"],
                  re.S)
for i, p in enumerate(pems):
    put("x509_ext", "pck_chain_%d" % i, b"\x00" + p)
put("x509_ext", "intel_root_der", b"\x00" + vec("dcap-qvl/TrustedRootCA.der"))
with tempfile.TemporaryDirectory() as td:
    key = os.path.join(td, "k.pem")
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key],
                   check=True)
    ext = ["-addext", "subjectAltName=DNS:app.example.com,IP:10.0.0.1",
           "-addext", "1.3.6.1.4.1.62397.1.3=DER:04:14:" + ":".join(["ab"] * 20),
           "-addext", "1.3.6.1.4.1.62397.1.4=DER:04:0a:" + b"app:custom".hex(":"),
           "-addext", "1.3.6.1.4.1.62397.1.8=DER:04:04:00:00:01:02"]
    ratls = subprocess.run(["openssl", "req", "-x509", "-new", "-key", key, "-subj", "/CN=ratls/O=m",
                            "-days", "1", "-outform", "DER"] + ext, check=True,
                           capture_output=True).stdout
    csr = subprocess.run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=csr", "-outform", "DER"]
                         + ext[:2], check=True, capture_output=True).stdout
put("x509_ext", "ratls_der", b"\x00" + ratls)
put("x509_ext", "csr_der", b"\x01" + csr)

att = vec("dstack/simulator/attestation.bin")
put("lua_scale", "attestation_v0", b"\x00" + att)
put("lua_scale", "csr_v2_empty", b"\x02" + b"\x00" * 12)

put("lua_msgpack", "map", b"\x82\xa6app_id\xc4\x02\xab\xcd\xa4size\xcd\x01\x00")
put("lua_msgpack", "array", b"\x98" + b"\xc4\x01\x01" * 8)
put("lua_msgpack", "nested", b"\x92\x91\x80\xdc\x00\x02\xcb" + b"\x3f\xf0" + b"\x00" * 6 + b"\xd3" + b"\xff" * 8)
put("lua_msgpack", "ext_str", b"\xd9\x05hello")

put("lua_proto", "bytes_field", b"\x00\x0a\x04abcd\x10\x01")
put("lua_proto", "varint", b"\x01\x08\x96\x01\x12\x03xyz\x18\x01")
put("lua_proto", "repeated", b"\x05\x12\x01a\x12\x01b\x1a\x00")
put("lua_prpc_json", "post_json", b"\x00" + b'{"report_data":"00ff","hash_algorithm":"sha512"}')
put("lua_prpc_json", "post_repeated", b"\x02" + b'{"alt_names":["a","b"],"not_before":12,"usage_ra_tls":true}')
put("lua_prpc_json", "get_query", b"\x01" + b"report_data=00ff&json&path=%2Fa%20b")

put("lua_json", "quote_report", vec("dstack/verifier/quote-report.json")[:6000])
put("lua_json", "app_compose", vec("dstack/simulator/app-compose.json"))
put("lua_json", "escapes", b'[1e300,-0.0,"\\u0000\\ud800x\\"",{"a":{"b":[]}},null,false]')

put("lua_eventlog_json", "getquote", vec("dstack/verifier/tdx-lite-getquote.json"))
put("lua_eventlog_json", "attestation", vec("dstack/verifier/tdx-lite-attestation.json"))
put("lua_eventlog_json", "runtime_log", b"\x00" + b'{"event":"app-id","payload":"abcd"}\n'
    + b'{"event":"boot-mr-done","payload":""}\n')

put("lua_app_compose", "simulator", vec("dstack/simulator/app-compose.json"))
put("lua_app_compose", "atlas_default", vec("derived/atlas-default-app-compose.json"))

heads = {
    "get": b"GET /prpc/Info?json HTTP/1.1\r\nHost: a.example\r\nAuthorization: Bearer fuzz-secret-token\r\n",
    "query_token": b"GET /x?token=fuzz-secret-token&a=%41%zz HTTP/1.1\r\nHost: h:8080\r\n",
    "post": b"POST /prpc/GetQuote HTTP/1.1\r\nContent-Type: application/vnd.x+json; charset=utf-8\r\nX-Admin-Token: no\r\n",
}
for k, v in heads.items():
    put("lua_http_head", k, v)
