// SPDX-License-Identifier: Apache-2.0
// The gateway panel: its registered CVM instances (IP, WireGuard handshake age — ticking,
// stale past 3 minutes — and live connections), connections per app, its routes, its
// WireGuard interface and, with etcd, the cluster state (down: the gateway routes what it knows).
'use strict';

import { h, fill, $, duration, short, badge } from './dom.mjs';

/** A handshake older than this (s) is shown stale (WireGuard rekeys every 2 minutes). */
export const STALE_AFTER = 180;

function age(inst, receivedAt) {
  const a = inst.handshake_age;
  if (typeof a !== 'number' || !isFinite(a)) return NaN;
  return a + (Date.now() - (receivedAt || Date.now())) / 1000;
}

function ageCell(inst, receivedAt) {
  const s = age(inst, receivedAt);
  if (!isFinite(s)) return [badge('no handshake', 'stale')];
  return [badge(s > STALE_AFTER ? 'stale' : 'fresh'), ' ', h('span', { text: duration(s) + ' ago' })];
}

function cellText(v) {
  if (v === null || v === undefined) return '-';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

// The etcd cluster's state: local only, up, or down since when (the gateway keeps routing).
function clusterCell(c) {
  if (!c || typeof c !== 'object') return [h('span', { text: 'local (no etcd)' })];
  const since = typeof c.since === 'number' ? new Date(c.since * 1000).toISOString().replace('.000Z', 'Z') : '-';
  const nodes = Array.isArray(c.nodes) ? c.nodes.length : 0;
  return [badge(c.etcd === 'up' ? 'etcd up' : 'etcd ' + String(c.etcd), c.etcd === 'up' ? 'fresh' : 'stale'), ' ',
    h('span', { text: `node ${c.node_id ?? '-'}, ${nodes} node(s) known, since ${since}` })];
}

/** Set up the panel. ctx = { store }. Returns { render, tick }. */
export function initGateway(ctx) {
  const { store } = ctx;

  function render() {
    const gw = store.parts.gateway;
    if (!gw) {
      fill($('gw-instances'));
      fill($('gw-conns'));
      fill($('gw-routes'));
      fill($('gw-summary'));
      return;
    }
    const wg = gw.wg || {};
    const conns = gw.conns || {};
    fill($('gw-summary'),
      h('dt', { text: 'Instances' }), h('dd', { text: String(gw.instances.length) }),
      h('dt', { text: 'Live connections' }), h('dd', { id: 'gw-total', text: String(conns.total ?? 0) }),
      h('dt', { text: 'WireGuard' }), h('dd', { text: wg.interface ? `${wg.interface}, UDP ${wg.listen_port ?? '-'}` : '-' }),
      h('dt', { text: 'Cluster state' }), h('dd', { id: 'gw-cluster' }, clusterCell(gw.cluster)));
    fill($('gw-instances'), gw.instances.length ? gw.instances.map((i) => h('tr', {},
      h('td', { 'data-label': 'Instance' }, short(i.id, 16)),
      h('td', { 'data-label': 'App' }, short(i.app_id, 16)),
      h('td', { 'data-label': 'IP', class: 'mono', text: i.ip || '-' }),
      h('td', { 'data-label': 'Handshake', 'data-hs': i.id }, ageCell(i, store.received.gateway)),
      h('td', { 'data-label': 'Connections', text: String(i.conns ?? 0) })))
      : h('tr', {}, h('td', { colspan: '5', class: 'muted', text: 'No instances registered.' })));
    const byApp = Object.entries(conns.by_app || {});
    fill($('gw-conns'), byApp.length ? byApp.map(([app, n]) => h('tr', {},
      h('td', { 'data-label': 'App' }, short(app, 16)), h('td', { 'data-label': 'Connections', text: String(n) })))
      : h('tr', {}, h('td', { colspan: '2', class: 'muted', text: 'No connections.' })));
    const routes = gw.routes;
    if (!routes.length) {
      fill($('gw-routes'), h('p', { class: 'muted', text: 'No routes.' }));
    } else if (typeof routes[0] !== 'object') {
      fill($('gw-routes'), h('ul', {}, routes.map((r) => h('li', { class: 'mono', text: cellText(r) }))));
    } else {
      const cols = [];
      for (const r of routes.slice(0, 20)) for (const k of Object.keys(r)) if (!cols.includes(k) && cols.length < 7) cols.push(k);
      fill($('gw-routes'), h('table', { class: 'cards' },
        h('caption', { class: 'sr-only', text: 'Gateway routes' }),
        h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col', text: c })))),
        h('tbody', {}, routes.map((r) => h('tr', {}, cols.map((c) => h('td', { 'data-label': c, class: 'mono', text: cellText(r[c]) })))))));
    }
  }

  function tick() {
    const gw = store.parts.gateway;
    if (!gw) return;
    for (const el of document.querySelectorAll('[data-hs]')) {
      const inst = gw.instances.find((i) => i.id === el.dataset.hs);
      if (inst) fill(el, ageCell(inst, store.received.gateway));
    }
  }

  return { render, tick };
}
