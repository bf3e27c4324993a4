// SPDX-License-Identifier: Apache-2.0
// The VMs panel: the VMM part's VMs (status, boot progress, uptime, ports, app URL), their
// start/stop/remove buttons (the VMM's pRPC methods), and the selected VM's details: its
// events, its log lines live (subscribe_logs on the websocket), links through the gateway and
// the UpgradeApp form (a new app-compose and/or a new env encrypted here to the app's key).
'use strict';

import { h, fill, $, duration, parseUptime, when, short, badge } from './dom.mjs';
import { prpc } from './api.mjs';
import { encryptEnv, parseEnvText, checkEnv, toHex } from './envcrypt.mjs';
import { buildCompose } from './compose.mjs';

// "tcp 127.0.0.1:8080→80"
function portText(p) {
  const addr = p.host_address ? p.host_address + ':' : '';
  return `${p.protocol || 'tcp'} ${addr}${p.host_port}→${p.vm_port}`;
}

/** The status to show: 'booting' while a running VM's guest has not said done, 'error' when
 *  its boot failed. */
export function shownStatus(vm) {
  if (vm.status !== 'running') return vm.status || 'unknown';
  if (vm.boot_error) return 'error';
  return booted(vm) ? 'running' : 'booting';
}

// Whether the guest said `done` since the VM's process last started: its boot progress, or a
// boot.progress "done" event after the last vmm.start (the guest reports more, such as
// "gateway registered", after done).
function booted(vm) {
  if (vm.boot_progress === 'done') return true;
  const evs = vm.events || [];
  for (let i = evs.length - 1; i >= 0; i--) {
    const e = evs[i];
    if (e.event === 'boot.progress' && e.body === 'done') return true;
    if (e.event === 'vmm.start' || e.event === 'vmm.adopted') return false;
  }
  return !vm.boot_progress; // nothing known of this start: its process runs
}

// Seconds a VM has been up now (its uptime when reported, plus the time since), or NaN.
function upNow(vm, receivedAt) {
  if (vm.status !== 'running') return NaN;
  const base = parseUptime(vm.uptime);
  const at = vm.uptime_at || receivedAt || Date.now();
  return base + (Date.now() - at) / 1000;
}

function logLine(l) {
  if (typeof l === 'string') return h('span', { text: l.replace(/\n$/, '') + '\n' });
  if (!l || typeof l !== 'object') return h('span', { text: String(l) + '\n' });
  const text = l.message ?? l.line ?? l.text ?? l.msg ?? JSON.stringify(l);
  const src = l.service || l.source || '';
  const ch = l.channel || l.stream || '';
  return h('span', { class: ch === 'stderr' ? 'stderr' : null },
    src ? `[${src}] ` : '', String(text).replace(/\n$/, '') + '\n');
}

/** Set up the panel. ctx = { store, feed, schedule(part) }. Returns { render, renderLogs, tick,
 *  select(id), resubscribe() }. */
export function initVms(ctx) {
  const { store } = ctx;
  const rows = $('vm-rows');
  let selected = null;
  let logCount = 0;
  const confirmTimers = new Map();

  function say(el, text, kind) {
    el.className = 'msg' + (kind ? ' ' + kind : '');
    el.textContent = text;
  }

  // GetInfo the VM and fold the answer into the store (an action's effect shows at once, even
  // before the feed's event).
  async function refresh(id) {
    try {
      const r = await prpc('GetInfo', { id });
      const vms = store.parts.vmm?.vms;
      if (!vms) return;
      const i = vms.findIndex((v) => v.id === id);
      if (!r.found) {
        if (i >= 0) vms.splice(i, 1);
      } else {
        const info = r.info;
        const vm = i >= 0 ? vms[i] : (vms.push({ id, events: [] }), vms[vms.length - 1]);
        for (const k of ['name', 'status', 'boot_progress', 'boot_error', 'uptime', 'app_id', 'instance_id', 'app_url', 'ports']) {
          if (info[k] !== undefined) vm[k] = info[k];
        }
        if (!info.ports && info.configuration) vm.ports = info.configuration.ports || [];
        if (Array.isArray(info.events) && info.events.length) vm.events = info.events;
        vm.uptime_at = Date.now();
      }
      ctx.schedule('vmm');
    } catch (e) {
      // the feed will tell
    }
  }

  // The vm.status events carry no instance id or app URL (the guest reports them during its
  // boot): a running VM without them is read again with GetInfo, at most every 3 s and 20
  // times (an app with no_instance_id never gets one).
  const lookups = new Map();
  function fillIn(vm) {
    if (!vm || vm.status !== 'running' || vm.instance_id) return;
    const l = lookups.get(vm.id) || { n: 0, at: 0 };
    if (l.n >= 20 || Date.now() - l.at < 3000) return;
    l.n++;
    l.at = Date.now();
    lookups.set(vm.id, l);
    refresh(vm.id);
  }

  async function act(method, vm, label) {
    const msg = $('vm-msg');
    say(msg, `${label} ${vm.name}…`);
    try {
      await prpc(method, { id: vm.id });
      say(msg, `${label} ${vm.name}: done`, 'ok');
      if (method === 'RemoveVm' && selected === vm.id) select(null);
    } catch (e) {
      say(msg, `${label} ${vm.name} failed: ${e.message}`, 'error');
    }
    refresh(vm.id);
  }

  function removeButton(vm) {
    const b = h('button', { type: 'button', class: 'small danger', 'aria-label': `Remove ${vm.name}`, text: 'Remove' });
    if (confirmTimers.has(vm.id)) {
      b.textContent = 'Confirm remove';
      b.setAttribute('aria-label', `Confirm: remove ${vm.name} and its disk`);
    }
    b.addEventListener('click', () => {
      if (confirmTimers.has(vm.id)) {
        clearTimeout(confirmTimers.get(vm.id));
        confirmTimers.delete(vm.id);
        act('RemoveVm', vm, 'Remove');
        return;
      }
      confirmTimers.set(vm.id, setTimeout(() => { confirmTimers.delete(vm.id); ctx.schedule('vmm'); }, 6000));
      ctx.schedule('vmm');
      setTimeout(() => document.querySelector(`[data-remove="${CSS.escape(vm.id)}"]`)?.focus(), 0);
    });
    b.dataset.remove = vm.id;
    return b;
  }

  function actionButtons(vm, withDetails) {
    const st = vm.status;
    const running = st === 'running' || st === 'stopping';
    return [
      withDetails && h('button', { type: 'button', class: 'small', 'aria-label': `Details and logs of ${vm.name}`,
        text: 'Details', onclick: () => select(vm.id) }),
      !running && st !== 'removing' && h('button', { type: 'button', class: 'small', 'aria-label': `Start ${vm.name}`,
        text: 'Start', onclick: () => act('StartVm', vm, 'Start') }),
      running && h('button', { type: 'button', class: 'small', 'aria-label': `Stop ${vm.name}`,
        text: 'Stop', onclick: () => act('StopVm', vm, 'Stop') }),
      st !== 'removing' && removeButton(vm),
    ];
  }

  function appLink(vm) {
    if (!vm.app_url) return h('span', { class: 'muted', text: '-' });
    return h('a', { href: vm.app_url, target: '_blank', rel: 'noopener noreferrer', class: 'app-url', text: 'open' });
  }

  function render() {
    const part = store.parts.vmm;
    const vms = part ? part.vms : [];
    fill(rows, vms.map((vm) => {
      const st = shownStatus(vm);
      return h('tr', { class: vm.id === selected ? 'selected' : null, 'data-vm': vm.id },
        h('td', { 'data-label': 'Name' },
          h('button', { type: 'button', class: 'linkish', text: vm.name || vm.id, onclick: () => select(vm.id),
            'aria-label': `${vm.name}: details and logs` }), ' ', short(vm.id, 8)),
        h('td', { 'data-label': 'Status' }, badge(st), vm.boot_error ? h('div', { class: 'error', text: vm.boot_error }) : null),
        h('td', { 'data-label': 'Boot', class: 'boot', text: vm.boot_progress || '-' }),
        h('td', { 'data-label': 'Uptime', 'data-uptime': vm.id, text: duration(upNow(vm, store.received.vmm)) }),
        h('td', { 'data-label': 'Ports' }, (vm.ports || []).length ? (vm.ports || []).map((p) => h('div', { class: 'mono', text: portText(p) })) : '-'),
        h('td', { 'data-label': 'App' }, appLink(vm)),
        h('td', { 'data-label': '' }, h('div', { class: 'actions' }, actionButtons(vm, true))));
    }));
    $('vm-empty').hidden = !part || vms.length > 0;
    renderDetail();
  }

  function gatewayLink(vm, port) {
    const gw = store.parts.vmm?.gateway;
    const host = vm.instance_id || vm.app_id;
    if (!gw || !gw.base_domain || !host || !port) return null;
    const p = Number(gw.port) || 443;
    return `https://${host}-${port}.${gw.base_domain}${p === 443 ? '' : ':' + p}/`;
  }

  function renderDetail() {
    const sec = $('vm-detail');
    const vm = selected && store.vm(selected);
    if (!vm) {
      sec.hidden = true;
      return;
    }
    sec.hidden = false;
    $('vm-detail-h').textContent = `${vm.name || vm.id}`;
    fill($('vm-actions'), actionButtons(vm, false));
    const kv = [
      ['VM id', vm.id], ['Status', shownStatus(vm)], ['Boot progress', vm.boot_progress || '-'],
      ['Uptime', duration(upNow(vm, store.received.vmm))], ['App id', vm.app_id || '-'],
      ['Instance id', vm.instance_id || '-'],
    ];
    if (vm.boot_error) kv.push(['Boot error', vm.boot_error]);
    if ((vm.ports || []).length) kv.push(['Ports', vm.ports.map(portText).join(', ')]);
    fill($('vm-info'), kv.map(([k, v]) => [h('dt', { text: k }), h('dd', { text: v, 'data-uptime': k === 'Uptime' ? vm.id : null })]));
    const links = $('vm-links');
    if (!links.dataset.vm || links.dataset.vm !== vm.id || links.dataset.url !== (vm.app_url || '') ||
        links.dataset.host !== (vm.instance_id || vm.app_id || '')) {
      links.dataset.vm = vm.id;
      links.dataset.url = vm.app_url || '';
      links.dataset.host = vm.instance_id || vm.app_id || '';
      const portIn = h('input', { id: 'vm-port', type: 'number', min: '1', max: '65535', value: '8080', inputmode: 'numeric' });
      const portA = h('a', { id: 'vm-port-link', target: '_blank', rel: 'noopener noreferrer' });
      const upd = () => {
        const u = gatewayLink(vm, Number(portIn.value));
        portA.textContent = u || '(no gateway route)';
        if (u) portA.href = u; else portA.removeAttribute('href');
      };
      portIn.addEventListener('input', upd);
      upd();
      fill(links,
        vm.app_url ? h('span', {}, 'Agent page: ', h('a', { id: 'vm-app-url', href: vm.app_url, target: '_blank', rel: 'noopener noreferrer', text: vm.app_url })) : null,
        h('span', {}, h('label', { for: 'vm-port', text: 'App port through the gateway ' }), portIn, ' ', portA));
    }
    const evs = (vm.events || []).slice().reverse();
    fill($('vm-events'), evs.length ? evs.map((e) => h('li', {},
      h('span', { class: 'muted', text: when(e.timestamp) + ' ' }), h('span', { class: 'ev', text: e.event || '' }),
      e.body ? ' ' + e.body : '')) : h('li', { class: 'muted', text: 'No events.' }));
  }

  /** Append the new log lines (all of them again if the list was reset). */
  function renderLogs() {
    const pre = $('vm-logs');
    const lines = store.logLines;
    if (lines.length < logCount || pre.childNodes.length === 0 || logCount === 0) {
      pre.replaceChildren();
      logCount = 0;
    }
    // the store drops old lines past its cap: then redraw the tail
    if (pre.childNodes.length > lines.length) {
      pre.replaceChildren();
      logCount = 0;
    }
    const frag = document.createDocumentFragment();
    for (let i = logCount; i < lines.length; i++) frag.appendChild(logLine(lines[i]));
    pre.appendChild(frag);
    logCount = lines.length;
    while (pre.childNodes.length > lines.length) pre.removeChild(pre.firstChild);
    $('vm-logs-state').textContent = !selected ? '' : store.logError ? `(${store.logError})` : `(${lines.length} lines, live)`;
    if ($('vm-logs-follow').checked) pre.scrollTop = pre.scrollHeight;
  }

  /** Ask the hub for the selected VM's logs (again: after a reconnect or a new snapshot). */
  function resubscribe() {
    if (!selected) return;
    store.followLogs(selected);
    logCount = 0;
    $('vm-logs').replaceChildren();
    ctx.feed.send({ type: 'subscribe_logs', id: selected, ch: $('vm-logs-ch').value });
    renderLogs();
  }

  function select(id) {
    if (selected && selected !== id) ctx.feed.send({ type: 'unsubscribe_logs', id: selected });
    selected = id;
    $('up-compose').value = '';
    $('up-env').value = '';
    say($('up-msg'), '');
    if (id) {
      resubscribe();
    } else {
      store.followLogs(null);
    }
    render();
    if (id) $('vm-detail').scrollIntoView({ block: 'start', behavior: 'smooth' });
  }

  $('vm-detail-close').addEventListener('click', () => select(null));
  $('vm-logs-ch').addEventListener('change', () => {
    if (!selected) return;
    ctx.feed.send({ type: 'unsubscribe_logs', id: selected });
    resubscribe();
  });

  // ---- UpgradeApp ----
  async function currentCompose(id) {
    const r = await prpc('GetInfo', { id });
    if (!r.found) throw new Error('the VM is gone');
    return r.info?.configuration?.compose_file || '';
  }
  $('up-load').addEventListener('click', async () => {
    if (!selected) return;
    try {
      $('up-compose').value = await currentCompose(selected);
    } catch (e) {
      say($('up-msg'), 'Could not load the app-compose: ' + e.message, 'error');
    }
  });
  $('update-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const vm = selected && store.vm(selected);
    if (!vm) return;
    const msg = $('up-msg');
    const btn = $('up-submit');
    btn.disabled = true;
    try {
      const envs = parseEnvText($('up-env').value);
      checkEnv(envs);
      let compose = $('up-compose').value.trim() ? $('up-compose').value : '';
      const body = { id: vm.id };
      if (envs.length) {
        say(msg, 'Encrypting the env to the app\'s key…');
        const base = compose || await currentCompose(vm.id);
        const built = await buildCompose({ kind: 'app-compose', text: base, envs, launchCheck: $('up-launch').checked });
        if (built.compose !== base || compose) compose = built.compose;
        const key = await prpc('GetAppEnvEncryptPubKey', { app_id: vm.app_id });
        body.encrypted_env = toHex(await encryptEnv(built.envs, key.public_key));
      }
      if (compose) body.compose_file = compose;
      if (!body.compose_file && !body.encrypted_env) throw new Error('nothing to update: give an app-compose or env vars');
      say(msg, 'Updating…');
      await prpc('UpgradeApp', body);
      $('up-env').value = '';
      say(msg, `Updated ${vm.name}${body.compose_file ? ' (app-compose)' : ''}${body.encrypted_env ? ' (encrypted env)' : ''}: restart it to apply.`, 'ok');
      refresh(vm.id);
    } catch (e) {
      say(msg, 'Update failed: ' + e.message, 'error');
    } finally {
      btn.disabled = false;
    }
  });

  /** Once a second: the uptimes move on. */
  function tick() {
    for (const vm of store.parts.vmm?.vms || []) fillIn(vm);
    for (const el of document.querySelectorAll('[data-uptime]')) {
      const vm = store.vm(el.dataset.uptime);
      if (vm) el.textContent = duration(upNow(vm, store.received.vmm));
    }
  }

  return { render, renderLogs, tick, select, resubscribe, refresh, selected: () => selected };
}
