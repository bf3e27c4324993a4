// SPDX-License-Identifier: Apache-2.0
// The dashboard's entry point: the store fed by the websocket (feed.mjs), the connection
// state shown in the header (live, connecting, reconnecting in N s, signed out), the parts the
// hub reports down, the tabs (the URL's #fragment picks one), and the panels redrawn (once per
// animation frame) when their part changes; uptimes and handshake ages tick every second.
'use strict';

import { $, h, fill } from './dom.mjs';
import { Store } from './store.mjs';
import { Feed } from './feed.mjs';
import { probeSession } from './api.mjs';
import { initVms } from './vms.mjs';
import { initDeploy } from './deploy.mjs';
import { initGateway } from './gateway.mjs';
import { initFleet } from './fleet.mjs';
import { initKms } from './kms.mjs';
import { initVerifier } from './verifier.mjs';

const TABS = ['vms', 'gateway', 'kms', 'policies', 'verifier'];
const PART_OF_TAB = { vms: 'vmm', gateway: 'gateway', kms: 'kms' };

const store = new Store();
const dirty = new Set();
let frame = 0;
let connState = 'connecting';
let retryAt = 0;
let everLive = false;

const ctx = {
  store,
  feed: null,
  onHub: () => !!store.parts.vmm,
  schedule(part) {
    dirty.add(part);
    if (!frame) frame = requestAnimationFrame(flush);
  },
};

const feed = new Feed({
  onMessage(msg) {
    const changed = store.apply(msg);
    if (msg.type === 'snapshot' && msg.parts && msg.parts.vmm) vms.resubscribe();
    for (const p of changed) ctx.schedule(p);
    if (msg.type === 'part_down' || msg.type === 'snapshot' || msg.type === 'event') ctx.schedule('down');
  },
  onState(state, detail) {
    connState = state;
    retryAt = state === 'reconnecting' ? detail.at : 0;
    if (state === 'live') everLive = true;
    renderConn(detail);
  },
  probe: probeSession,
});
ctx.feed = feed;

const vms = initVms(ctx);
ctx.vms = vms;
const deploy = initDeploy(ctx);
const gateway = initGateway(ctx);
const fleet = initFleet(ctx);
const kms = initKms(ctx);
initVerifier();

function flush() {
  frame = 0;
  const d = new Set(dirty);
  dirty.clear();
  if (d.has('vmm')) {
    vms.render();
    deploy.renderImages();
    fleet.render();
  }
  if (d.has('log')) vms.renderLogs();
  if (d.has('gateway')) gateway.render();
  if (d.has('kms')) kms.renderDecisions();
  if (d.has('kms') || d.has('gateway')) kms.renderPolicies();
  if (d.has('vmm') || d.has('kms') || d.has('gateway') || d.has('down')) renderParts();
}

// ---- connection state ----
function renderConn(detail) {
  const el = $('conn');
  el.className = 'conn conn-' + connState;
  const retry = $('conn-retry');
  retry.hidden = connState === 'live' || connState === 'connecting';
  if (connState === 'live') el.textContent = 'Live';
  else if (connState === 'connecting') el.textContent = everLive ? 'Reconnecting…' : 'Connecting…';
  else if (connState === 'signed-out') el.textContent = 'Signed out: open a fresh login link';
  else {
    const s = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
    el.textContent = `Disconnected, retrying in ${s} s`;
    if (detail && detail.why) el.title = detail.why;
  }
  document.body.classList.toggle('offline', connState !== 'live');
}
$('conn-retry').addEventListener('click', () => feed.now());

// ---- parts present / down ----
function renderParts() {
  const down = Object.entries(store.down);
  fill($('down'), down.map(([p, err]) => h('p', {}, h('strong', { text: `${p} unreachable: ` }), err,
    ' (the hub keeps trying; what is shown is its last state)')));
  for (const el of document.querySelectorAll('[data-missing]')) {
    const p = el.dataset.missing;
    el.hidden = !everLive || !!store.parts[p] || !!store.down[p];
  }
  for (const el of document.querySelectorAll('[data-down]')) {
    const err = store.down[el.dataset.down];
    el.hidden = !err;
    el.textContent = err ? `${el.dataset.down} is unreachable: ${err}` : '';
  }
  for (const a of document.querySelectorAll('[data-tab]')) {
    const p = PART_OF_TAB[a.dataset.tab];
    let dot = a.querySelector('.dot');
    if (p && store.down[p]) {
      if (!dot) a.appendChild(h('span', { class: 'dot', 'aria-label': '(down)', text: '●' }));
    } else if (dot) {
      dot.remove();
    }
  }
}

// ---- tabs ----
function showTab() {
  let tab = (location.hash || '#vms').slice(1).split('/')[0];
  if (!TABS.includes(tab)) tab = 'vms';
  for (const sec of document.querySelectorAll('[data-panel]')) sec.hidden = sec.dataset.panel !== tab;
  for (const a of document.querySelectorAll('[data-tab]')) {
    if (a.dataset.tab === tab) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}
window.addEventListener('hashchange', () => {
  showTab();
  $('main').focus({ preventScroll: true });
});
showTab();

// ---- once a second ----
setInterval(() => {
  vms.tick();
  gateway.tick();
  if (connState === 'reconnecting') renderConn();
}, 1000);

renderParts();
feed.start();

// for the browser test and the curious: the state, read-only
Object.defineProperty(window, 'moonstackDashboard', { value: Object.freeze({ store, feed }) });
