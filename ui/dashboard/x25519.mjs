// SPDX-License-Identifier: Apache-2.0
// X25519 (RFC 7748) in plain JavaScript with BigInt: the fallback for a browser whose WebCrypto
// has no X25519 (envcrypt.mjs prefers WebCrypto's). Only ever used for an ephemeral key that
// lives for one encryption, so it does not try to be constant-time.
'use strict';

const P = (1n << 255n) - 19n;
const A24 = 121665n;

const mod = (a) => {
  const r = a % P;
  return r < 0n ? r + P : r;
};

function pow(b, e) {
  let r = 1n;
  b = mod(b);
  while (e > 0n) {
    if (e & 1n) r = mod(r * b);
    b = mod(b * b);
    e >>= 1n;
  }
  return r;
}

function leToBig(bytes) {
  let n = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i]);
  return n;
}

function bigToLe(n) {
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) {
    out[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return out;
}

/** The X25519 function: scalar (32 bytes) times the u-coordinate u (32 bytes) -> 32 bytes. */
export function scalarMult(scalar, u) {
  if (scalar.length !== 32 || u.length !== 32) throw new Error('x25519: 32-byte inputs expected');
  const k = Uint8Array.from(scalar);
  k[0] &= 248;
  k[31] &= 127;
  k[31] |= 64;
  const kn = leToBig(k);
  const uu = Uint8Array.from(u);
  uu[31] &= 127;
  const x1 = mod(leToBig(uu));
  let x2 = 1n, z2 = 0n, x3 = x1, z3 = 1n, swap = 0n;
  for (let t = 254n; t >= 0n; t--) {
    const kt = (kn >> t) & 1n;
    swap ^= kt;
    if (swap) [x2, x3, z2, z3] = [x3, x2, z3, z2];
    swap = kt;
    const a = mod(x2 + z2), aa = mod(a * a), b = mod(x2 - z2), bb = mod(b * b);
    const e = mod(aa - bb), c = mod(x3 + z3), d = mod(x3 - z3);
    const da = mod(d * a), cb = mod(c * b);
    x3 = mod((da + cb) * (da + cb));
    z3 = mod(x1 * mod((da - cb) * (da - cb)));
    x2 = mod(aa * bb);
    z2 = mod(e * (aa + A24 * e));
  }
  if (swap) [x2, x3, z2, z3] = [x3, x2, z3, z2];
  return bigToLe(mod(x2 * pow(z2, P - 2n)));
}

const BASE = new Uint8Array(32);
BASE[0] = 9;

/** The public key of a 32-byte secret. */
export function publicKey(secret) {
  return scalarMult(secret, BASE);
}
