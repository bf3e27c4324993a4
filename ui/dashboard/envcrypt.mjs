// SPDX-License-Identifier: Apache-2.0
// An app's environment encrypted in the browser to its KMS env key, in the byte layout the
// guest agent decrypts (moonstack.crypto.dstack.env_decrypt, upstream's encrypted-env):
//   ephemeral X25519 public key (32) || AES-GCM IV (12) || AES-256-GCM ciphertext || tag (16)
// of the JSON {"env": [{"key": K, "value": V}, ...]}; the raw X25519 shared secret is the AES
// key (no KDF, no AAD). X25519 comes from WebCrypto, or x25519.mjs where WebCrypto lacks it.
// Also the env text parser (KEY=VALUE lines, as `moonstack vm deploy --env-file`), hex and
// SHA-256 helpers. Nothing here keeps a secret: the ephemeral key is dropped after one use.
'use strict';

import * as x25519 from './x25519.mjs';

const subtle = () => globalThis.crypto.subtle;

/** Lowercase hex of bytes (Uint8Array or ArrayBuffer). */
export function toHex(bytes) {
  const b = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let s = '';
  for (const x of b) s += x.toString(16).padStart(2, '0');
  return s;
}

/** Bytes of a hex string (an optional 0x prefix, whitespace ignored); throws on bad hex. */
export function fromHex(hex) {
  const s = String(hex).replace(/\s+/g, '').replace(/^0x/i, '');
  if (s.length % 2 || /[^0-9a-f]/i.test(s)) throw new Error('not a hex string');
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Hex SHA-256 of a string (UTF-8) or bytes. */
export async function sha256Hex(data) {
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  return toHex(await subtle().digest('SHA-256', bytes));
}

/** Parse env text: KEY=VALUE lines (an `export ` prefix allowed), blank lines and # comments
 *  skipped, a value in matching single or double quotes loses them. Returns [{key, value}] in
 *  order; throws naming the line of anything else. */
export function parseEnvText(text) {
  const out = [];
  String(text).split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    if (/^\s*$/.test(line) || /^\s*#/.test(line)) return;
    const m = /^\s*(?:export\s+)?([A-Za-z0-9_]+)\s*=(.*)$/.exec(line);
    if (!m) throw new Error(`env line ${i + 1}: not KEY=VALUE`);
    let v = m[2].trim();
    const q = v[0];
    if ((q === '"' || q === "'") && v.length >= 2 && v[v.length - 1] === q) v = v.slice(1, -1);
    out.push({ key: m[1], value: v });
  });
  return out;
}

/** Check env entries as the guest will (upstream's parse_env): names ^[A-Za-z_][A-Za-z0-9_]*$
 *  of at most 255 bytes, values at most 128 KiB, at most 1024 entries, no duplicate key.
 *  Throws with the first problem. */
export function checkEnv(envs) {
  if (envs.length > 1024) throw new Error(`too many environment variables: ${envs.length}`);
  const seen = new Set();
  for (const { key, value } of envs) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key) || key.length > 255) throw new Error(`invalid env name: ${key}`);
    if (new TextEncoder().encode(value).length > 128 * 1024) throw new Error(`env value too long: ${key}`);
    if (seen.has(key)) throw new Error(`env name given twice: ${key}`);
    seen.add(key);
  }
}

let webX25519; // undefined: not probed yet; true/false after
async function hasWebX25519() {
  if (webX25519 === undefined) {
    try {
      await subtle().generateKey({ name: 'X25519' }, true, ['deriveBits']);
      webX25519 = true;
    } catch (e) {
      webX25519 = false;
    }
  }
  return webX25519;
}

// An ephemeral key pair and the shared secret with `peer` (32 bytes): { pub, shared }.
async function agree(peer, opts) {
  if (!opts.pureJs && (await hasWebX25519())) {
    const kp = await subtle().generateKey({ name: 'X25519' }, true, ['deriveBits']);
    const peerKey = await subtle().importKey('raw', peer, { name: 'X25519' }, false, []);
    const shared = new Uint8Array(await subtle().deriveBits({ name: 'X25519', public: peerKey }, kp.privateKey, 256));
    const pub = new Uint8Array(await subtle().exportKey('raw', kp.publicKey));
    return { pub, shared };
  }
  const secret = globalThis.crypto.getRandomValues(new Uint8Array(32));
  const pub = x25519.publicKey(secret);
  const shared = x25519.scalarMult(secret, peer);
  secret.fill(0);
  return { pub, shared };
}

/** Encrypt env entries [{key, value}] to the app's env public key (32 bytes or hex): the blob
 *  (Uint8Array). opts.pureJs forces the JavaScript X25519 (tests). */
export async function encryptEnv(envs, publicKey, opts = {}) {
  const peer = typeof publicKey === 'string' ? fromHex(publicKey) : publicKey;
  if (!(peer instanceof Uint8Array) || peer.length !== 32) throw new Error('the env public key must be 32 bytes');
  const { pub, shared } = await agree(peer, opts);
  if (shared.every((b) => b === 0)) throw new Error('the env public key is a low-order point');
  const key = await subtle().importKey('raw', shared, { name: 'AES-GCM' }, false, ['encrypt']);
  shared.fill(0);
  const iv = globalThis.crypto.getRandomValues(new Uint8Array(12));
  const list = envs.map(({ key: k, value }) => ({ key: k, value }));
  const plain = new TextEncoder().encode(JSON.stringify({ env: list }));
  const ct = new Uint8Array(await subtle().encrypt({ name: 'AES-GCM', iv }, key, plain));
  const out = new Uint8Array(32 + 12 + ct.length);
  out.set(pub, 0);
  out.set(iv, 32);
  out.set(ct, 44);
  return out;
}

/** A random launch token: 32 characters of [A-Za-z0-9] (as upstream's deploy scripts). */
export function randomToken(n = 32) {
  const abc = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  let s = '';
  while (s.length < n) {
    for (const b of globalThis.crypto.getRandomValues(new Uint8Array(n))) {
      if (b < 248 && s.length < n) s += abc[b % 62]; // 248 = 4 * 62: no modulo bias
    }
  }
  return s;
}
