// SPDX-License-Identifier: Apache-2.0
// The KMS panel (recent auth decisions, newest first: what was asked, allowed or denied, the
// reason and the policy version that decided) and the policies panel (each daemon's active
// policy with its version and SHA-256, a rejected reload's validation errors, the reload
// buttons: POST policy_reload through the hub or on the part's own daemon).
'use strict';

import { h, fill, $, when, short, badge } from './dom.mjs';
import { action } from './api.mjs';

/** Set up both panels. ctx = { store, onHub() }. Returns { renderDecisions, renderPolicies }. */
export function initKms(ctx) {
  const { store } = ctx;

  function renderDecisions() {
    const kms = store.parts.kms;
    const filter = $('kms-filter').value;
    const list = (kms ? kms.decisions : []).filter((d) => filter === 'all' || (filter === 'allowed') === (d.allowed === true));
    fill($('kms-rows'), list.map((d) => h('tr', {},
      h('td', { 'data-label': 'Time', text: when(d.time) }),
      h('td', { 'data-label': 'Kind', text: d.kind || d.scope || '-' }),
      h('td', { 'data-label': 'App' }, short(d.app_id, 12)),
      h('td', { 'data-label': 'Instance' }, short(d.instance_id, 12)),
      h('td', { 'data-label': 'Decision' }, badge(d.allowed ? 'allowed' : 'denied')),
      h('td', { 'data-label': 'Reason', text: d.reason || '-' }),
      h('td', { 'data-label': 'Policy' }, h('span', { text: String(d.policy_version ?? '-') }),
        d.policy_sha256 ? [' ', short(d.policy_sha256, 10)] : null))));
    $('kms-empty').hidden = !kms || list.length > 0;
  }
  $('kms-filter').addEventListener('change', renderDecisions);

  function policiesOf(part) {
    const p = store.parts[part];
    if (!p) return [];
    if (Array.isArray(p.policies)) return p.policies;
    if (p.policy && typeof p.policy === 'object') return [p.policy];
    return [];
  }

  function renderPolicies() {
    const rows = [];
    for (const part of ['kms', 'gateway']) {
      for (const pol of policiesOf(part)) {
        rows.push(h('tr', {},
          h('td', { 'data-label': 'Daemon', text: part }),
          h('td', { 'data-label': 'Policy', text: pol.name || '-' }),
          h('td', { 'data-label': 'Version', text: String(pol.version ?? '-') }),
          h('td', { 'data-label': 'SHA-256' }, pol.sha256 ? h('code', { text: pol.sha256 }) : '-'),
          h('td', { 'data-label': 'State' }, pol.error ? [badge('rejected'), h('pre', { class: 'error', text: String(pol.error) })] : badge('ok'))));
      }
    }
    fill($('pol-rows'), rows.length ? rows : h('tr', {}, h('td', { colspan: '5', class: 'muted', text: 'No policy reported.' })));
    $('pol-reload-kms').hidden = !store.parts.kms;
    $('pol-reload-gateway').hidden = !store.parts.gateway;
  }

  async function reload(part) {
    const msg = $('pol-msg');
    msg.className = 'msg';
    msg.textContent = `Reloading the ${part} policy…`;
    try {
      const r = await action(part, 'policy_reload', {}, ctx.onHub());
      if (r && (r.ok === false || r.error)) {
        msg.className = 'msg error';
        fill(msg, `The ${part} policy was rejected; the previous one stays.\n`, h('pre', { text: errorText(r) }));
      } else {
        msg.className = 'msg ok';
        msg.textContent = `The ${part} policy is active: ${r.name ? r.name + ' ' : ''}version ${r.version ?? '?'}${r.sha256 ? ', sha256 ' + r.sha256 : ''}`;
      }
    } catch (e) {
      msg.className = 'msg error';
      const more = e.data ? errorText(e.data) : '';
      fill(msg, `Reload of the ${part} policy failed: ${e.message}`, more && more !== e.data.error ? h('pre', { text: more }) : null);
    }
  }
  $('pol-reload-kms').addEventListener('click', () => reload('kms'));
  $('pol-reload-gateway').addEventListener('click', () => reload('gateway'));

  return { renderDecisions, renderPolicies };
}

// The validation errors of a reload's answer as text.
function errorText(r) {
  const out = [];
  if (r.error) out.push(String(r.error));
  for (const k of ['errors', 'violations', 'failures']) {
    if (Array.isArray(r[k])) for (const e of r[k]) out.push(typeof e === 'object' ? JSON.stringify(e) : String(e));
  }
  return out.join('\n') || JSON.stringify(r, null, 2);
}
