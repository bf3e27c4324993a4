// SPDX-License-Identifier: Apache-2.0
// The fleet: every VMM host and its VMs as registered in etcd (the VMM's `cluster`), shown
// under the VM list of the hub with a host column; refreshed every few seconds from
// POST /dashboard/api/fleet while the VMs tab is shown. Hidden when the VMM has no cluster.
'use strict';

import { h, fill, $, short, badge } from './dom.mjs';
import { postJson } from './api.mjs';

/** How often the fleet is read again (ms). */
export const REFRESH_MS = 3000;

/** Set up the fleet section. ctx = { store }. Returns { render, refresh }. */
export function initFleet(ctx) {
  const { store } = ctx;
  let fleet = null;
  let busy = false;

  function render() {
    const vmm = store.parts.vmm;
    const f = fleet || (vmm && vmm.fleet && typeof vmm.fleet === 'object' ? vmm.fleet : null);
    const section = $('fleet');
    if (!section) return;
    section.hidden = !f;
    if (!f) return;
    const hosts = Array.isArray(f.hosts) ? f.hosts : [];
    const vms = Array.isArray(f.vms) ? f.vms : [];
    fill($('fleet-state'), badge(f.etcd === 'down' ? 'etcd down' : 'etcd ' + String(f.etcd || '?'),
      f.etcd === 'down' ? 'stale' : 'fresh'), ' ', h('span', { text: `${hosts.length} host(s), ${vms.length} VM(s); this host: ${f.host_id || '-'}` }));
    fill($('fleet-hosts'), hosts.length ? hosts.map((x) => h('tr', {},
      h('td', { 'data-label': 'Host', class: 'mono', text: String(x.host_id) }),
      h('td', { 'data-label': 'VMs', text: `${x.running ?? 0} running / ${x.vms ?? 0}` }),
      h('td', { 'data-label': 'Dashboard' }, x.url && /^https?:\/\//.test(x.url)
        ? h('a', { href: x.url, rel: 'noopener noreferrer', text: x.url }) : h('span', { text: '-' }))))
      : h('tr', {}, h('td', { colspan: '3', class: 'muted', text: 'No host registered.' })));
    fill($('fleet-vms'), vms.length ? vms.map((v) => h('tr', {},
      h('td', { 'data-label': 'Host', class: 'mono', text: String(v.host_id) }),
      h('td', { 'data-label': 'Name', text: String(v.name ?? '-') }),
      h('td', { 'data-label': 'Status' }, badge(String(v.status ?? '?'))),
      h('td', { 'data-label': 'App' }, short(String(v.app_id || '-'), 16)),
      h('td', { 'data-label': 'Id' }, short(String(v.id), 8))))
      : h('tr', {}, h('td', { colspan: '5', class: 'muted', text: 'No VMs in the fleet.' })));
  }

  async function refresh() {
    const vmm = store.parts.vmm;
    if (busy || !vmm || !vmm.fleet || typeof vmm.fleet !== 'object') return;
    const panel = $('panel-vms');
    if (panel && panel.hidden) return;
    busy = true;
    try {
      fleet = await postJson('/dashboard/api/fleet', {});
      render();
    } catch (e) {
      // keep the last view; the feed's connection state says whether the VMM answers
    } finally {
      busy = false;
    }
  }

  setInterval(refresh, REFRESH_MS);
  return { render, refresh };
}
