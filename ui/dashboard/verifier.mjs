// SPDX-License-Identifier: Apache-2.0
// The verifier panel: a TDX quote pasted as hex or uploaded (binary, or a text file of hex),
// an optional event log, POST /dashboard/api/verify (the hub runs moonstack.verifier), and
// the verdict: accepted or rejected, why, and the verifier's whole answer.
'use strict';

import { h, fill, $ } from './dom.mjs';
import { postJson } from './api.mjs';
import { toHex } from './envcrypt.mjs';

function readFile(input, binary) {
  return new Promise((resolve, reject) => {
    const f = input.files && input.files[0];
    if (!f) return resolve(null);
    const r = new FileReader();
    r.onload = () => resolve(r.result);
    r.onerror = () => reject(r.error);
    if (binary) r.readAsArrayBuffer(f); else r.readAsText(f);
  });
}

/** The hex of a quote file: its text when it is hex already, else its bytes. */
export function quoteFileHex(buf) {
  const bytes = new Uint8Array(buf);
  const text = new TextDecoder('latin1').decode(bytes).trim().replace(/^0x/i, '');
  if (text.length > 0 && /^[0-9a-fA-F\s]+$/.test(text)) return text.replace(/\s+/g, '').toLowerCase();
  return toHex(bytes);
}

function verdictOf(r) {
  if (!r || typeof r !== 'object') return { accepted: false, why: 'no answer' };
  const accepted = r.ok === true || (r.ok === undefined && r.verified === true && r.policy_ok !== false && !r.error);
  return { accepted, why: r.error || (Array.isArray(r.violations) && r.violations.length ? 'policy violations' : '') };
}

/** Set up the panel. Returns {}. */
export function initVerifier() {
  $('ver-file').addEventListener('change', async () => {
    const buf = await readFile($('ver-file'), true);
    if (buf) $('ver-hex').value = quoteFileHex(buf);
  });
  $('ver-log-file').addEventListener('change', async () => {
    const text = await readFile($('ver-log-file'), false);
    if (text !== null) $('ver-log').value = text;
  });
  $('ver-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const out = $('ver-verdict');
    const hex = $('ver-hex').value.replace(/\s+/g, '').replace(/^0x/i, '');
    if (!hex || hex.length % 2 || /[^0-9a-fA-F]/.test(hex)) {
      fill(out, h('p', { class: 'error', text: 'The quote must be hex (an even number of 0-9a-f digits).' }));
      return;
    }
    const body = { quote_hex: hex.toLowerCase() };
    const log = $('ver-log').value.trim();
    if (log) {
      try {
        JSON.parse(log);
      } catch (e) {
        fill(out, h('p', { class: 'error', text: 'The event log is not JSON: ' + e.message }));
        return;
      }
      body.event_log = log;
    }
    $('ver-submit').disabled = true;
    fill(out, h('p', { text: 'Verifying…' }));
    let r;
    try {
      r = await postJson('/dashboard/api/verify', body);
    } catch (e) {
      if (!e.data || typeof e.data !== 'object' || Object.keys(e.data).length <= 1) {
        fill(out, h('p', { class: 'big error', text: 'REJECTED' }), h('p', { text: e.message }));
        $('ver-submit').disabled = false;
        return;
      }
      r = e.data;
    }
    $('ver-submit').disabled = false;
    const v = verdictOf(r);
    const rows = [];
    for (const k of ['tee_type', 'tee_variant', 'status', 'simulated', 'verified', 'policy_ok', 'exit_code']) {
      if (r[k] !== undefined) rows.push(h('dt', { text: k }), h('dd', { text: String(r[k]) }));
    }
    fill(out,
      h('p', { class: 'big ' + (v.accepted ? 'badge-accepted' : 'badge-rejected'), id: 'ver-result', text: v.accepted ? 'ACCEPTED' : 'REJECTED' }),
      v.why ? h('p', { text: v.why }) : null,
      Array.isArray(r.violations) && r.violations.length
        ? h('ul', {}, r.violations.map((x) => h('li', { text: typeof x === 'object' ? `${x.field}: ${x.reason}` : String(x) }))) : null,
      rows.length ? h('dl', { class: 'kv' }, rows) : null,
      h('details', {}, h('summary', { text: 'The verifier\'s whole answer' }), h('pre', { text: JSON.stringify(r, null, 2) })));
  });
  return {};
}
