#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# Test helper for tests/binding/proxy_*_spec.lua: a TLS (or raw) client of the gateway proxy
# driven by a JSON plan, with full control of the TLS record layer (ssl.MemoryBIO), so a spec
# can half-close with close_notify, tell a clean EOF (close_notify) from a ragged one, read the
# ALPN choice and check session resumption. Prints one JSON object per connection.
#
#   proxy_peer.py '{"port":P,"sni":"localhost-9000.test","tls":true,"alpn":["h2"],
#                   "ops":[["send",1024],["recv",1024],["shutdown"],["eof"]],
#                   "times":1,"parallel":1,"timeout":10}'
#
# ops: send N (pattern bytes), recv N (exactly N, checked against the echo of what was sent),
# recv_any (whatever arrives first, reported), shutdown (TLS: close_notify; raw: SHUT_WR),
# eof (read to the end: reports eof = "clean" | "ragged" | "reset" and extra bytes),
# sleep MS, closed_within MS. preamble: bytes sent first (an inbound PROXY header); (the proxy must close the connection within MS).
# tls=false sends a real ClientHello (made by ssl.MemoryBIO) then the ops' bytes in the clear:
# for passthrough to a plain TCP backend that checks the bytes.
import json
import socket
import ssl
import sys
import threading
import time


def pattern(off, n, seed):
    return bytes(((off + i) * 131 + seed) % 251 for i in range(n))


class Peer:
    def __init__(self, plan, ctx):
        self.plan = plan
        self.ctx = ctx
        self.sock = socket.create_connection(("127.0.0.1", plan["port"]), timeout=plan.get("timeout", 10))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if plan.get("preamble"):
            self.sock.sendall(plan["preamble"].encode("latin-1"))
        self.tls = plan.get("tls", True)
        self.sent = 0
        self.rcvd = 0
        self.seed = plan.get("seed", 7)
        self.out = {}
        self.inb = ssl.MemoryBIO()
        self.outb = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inb, self.outb, server_hostname=plan["sni"],
                                session=plan.get("_session"))
        if self.tls:
            self.handshake()
        else:
            try:
                self.obj.do_handshake()
            except ssl.SSLWantReadError:
                pass
            hello = self.outb.read()
            self.out["hello_len"] = len(hello)
            self.sock.sendall(hello)

    def flush(self):
        data = self.outb.read()
        if data:
            self.sock.sendall(data)

    def fill(self):
        data = self.sock.recv(65536)
        if not data:
            self.inb.write_eof()
            return False
        self.inb.write(data)
        return True

    def handshake(self):
        while True:
            try:
                self.obj.do_handshake()
                self.flush()
                break
            except ssl.SSLWantReadError:
                self.flush()
                if not self.fill():
                    raise ConnectionError("EOF during the handshake")
        if self.obj.selected_alpn_protocol():
            self.out["alpn"] = self.obj.selected_alpn_protocol()
        self.out["version"] = self.obj.version()

    def read(self, n):
        """Up to n bytes; b'' at a clean end; raises on a ragged one."""
        if not self.tls:
            return self.sock.recv(n)
        while True:
            try:
                return self.obj.read(n)
            except ssl.SSLWantReadError:
                self.flush()
                if not self.fill():
                    continue
            except ssl.SSLZeroReturnError:
                return b""

    def send(self, data):
        if not self.tls:
            self.sock.sendall(data)
            return
        view = memoryview(data)
        while view:
            n = self.obj.write(view[:16384])
            view = view[n:]
            self.flush()

    def op(self, name, *args):
        if name == "send":
            self.send(pattern(self.sent, args[0], self.seed))
            self.sent += args[0]
        elif name == "recv":
            want, got = args[0], bytearray()
            while len(got) < want:
                chunk = self.read(want - len(got))
                if not chunk:
                    raise ConnectionError("EOF after %d of %d bytes" % (len(got), want))
                got += chunk
            if bytes(got) != pattern(self.rcvd, want, self.seed):
                raise ValueError("bytes %d..%d differ from what was sent" % (self.rcvd, self.rcvd + want))
            self.rcvd += want
        elif name == "recv_any":
            self.out.setdefault("recv_any", []).append(self.read(65536).decode("latin-1"))
        elif name == "shutdown":
            if self.tls:
                try:
                    self.obj.unwrap()
                except ssl.SSLWantReadError:
                    pass
                self.flush()
            else:
                self.sock.shutdown(socket.SHUT_WR)
        elif name == "eof":
            extra = 0
            try:
                while True:
                    chunk = self.read(65536)
                    if not chunk:
                        self.out["eof"] = "clean"
                        break
                    extra += len(chunk)
            except (ssl.SSLEOFError, ssl.SSLError) as e:
                self.out["eof"] = "ragged"
                self.out["eof_error"] = str(e)
            except ConnectionResetError:
                self.out["eof"] = "reset"
            self.out["extra"] = extra
        elif name == "sleep":
            time.sleep(args[0] / 1000.0)
        elif name == "closed_within":
            self.sock.settimeout(args[0] / 1000.0)
            start = time.monotonic()
            try:
                while self.sock.recv(65536):
                    pass
                self.out["closed_after_ms"] = int((time.monotonic() - start) * 1000)
            except socket.timeout:
                self.out["closed_after_ms"] = None
            except ConnectionResetError:
                self.out["closed_after_ms"] = int((time.monotonic() - start) * 1000)
        else:
            raise ValueError("unknown op " + name)

    def close(self):
        self.sock.close()


def one(plan, ctx, session=None):
    res = {"ok": False}
    peer = None
    try:
        plan = dict(plan, _session=session)
        peer = Peer(plan, ctx)
        for op in plan.get("ops", []):
            peer.op(*op)
        res.update(peer.out)
        res["ok"] = True
        res["resumed"] = peer.obj.session_reused if peer.tls else False
        res["sent"], res["rcvd"] = peer.sent, peer.rcvd
        res["session"] = peer.obj.session if peer.tls else None
    except Exception as e:  # reported to the spec, which decides
        res["error"] = "%s: %s" % (type(e).__name__, e)
        if peer:
            res.update(peer.out)
    finally:
        if peer:
            peer.close()
    return res


def main():
    plan = json.loads(sys.argv[1])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = getattr(ssl.TLSVersion, plan.get("min_version", "TLSv1_2"))
    if plan.get("max_version"):
        ctx.maximum_version = getattr(ssl.TLSVersion, plan["max_version"])
    if plan.get("alpn"):
        ctx.set_alpn_protocols(plan["alpn"])
    results = [None] * plan.get("parallel", 1)

    def worker(i):
        out, session = [], None
        for _ in range(plan.get("times", 1)):
            r = one(plan, ctx, session if plan.get("resume") else None)
            session = r.pop("session", None) or session
            out.append(r)
        results[i] = out

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps([r for rs in results for r in rs]))


main()
