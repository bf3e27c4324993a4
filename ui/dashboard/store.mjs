// SPDX-License-Identifier: Apache-2.0
// The dashboard's state, kept from the websocket's messages (no DOM here): the parts' last
// snapshots ({vmm, kms, gateway}), their event sequence numbers, the parts the hub reports
// down, and the VM whose log lines are followed. apply(msg) folds one message in and returns
// the names of the parts that changed ('log' for log lines), for the panels to redraw.
'use strict';

/** Most recent KMS decisions kept (the snapshot brings its own ring). */
export const MAX_DECISIONS = 200;
/** Events kept per VM. */
export const MAX_VM_EVENTS = 100;
/** Log lines kept for the followed VM. */
export const MAX_LOG_LINES = 2000;

const PARTS = ['vmm', 'kms', 'gateway'];

export class Store {
  constructor() {
    this.parts = {};       // part -> its snapshot (objects as the contract describes)
    this.seq = {};         // part -> last event seq applied
    this.down = {};        // part -> error, while the hub cannot reach it
    this.received = {};    // part -> Date.now() of its last snapshot (uptimes and ages tick from it)
    this.logId = null;     // the VM whose logs are followed
    this.logLines = [];
    this.logError = null;  // the hub's answer when the VM's logs cannot be followed
  }

  /** Fold in one websocket message; returns the list of changed parts. */
  apply(msg) {
    if (!msg || typeof msg !== 'object') return [];
    switch (msg.type) {
      case 'snapshot': return this.snapshot(msg.parts || {}, msg.seq || {});
      case 'event': return this.event(msg);
      case 'part_down':
        if (!PARTS.includes(msg.part)) return [];
        this.down[msg.part] = String(msg.error || 'unreachable');
        return [msg.part];
      case 'log':
        if (msg.error && msg.id === this.logId) {
          this.logError = String(msg.error);
          return ['log'];
        }
        return this.log(msg.id, msg.lines);
      default: return [];
    }
  }

  snapshot(parts, seq) {
    const changed = [];
    for (const [p, snap] of Object.entries(parts)) {
      if (!PARTS.includes(p) || !snap || typeof snap !== 'object') continue;
      this.parts[p] = normalize(p, snap);
      if (typeof seq[p] === 'number') this.seq[p] = seq[p];
      this.received[p] = Date.now();
      delete this.down[p];
      changed.push(p);
    }
    return changed;
  }

  event(msg) {
    const p = msg.part;
    if (!PARTS.includes(p)) return [];
    if (typeof msg.seq === 'number') {
      if (typeof this.seq[p] === 'number' && msg.seq <= this.seq[p]) return []; // seen already
      this.seq[p] = msg.seq;
    }
    delete this.down[p];
    const data = msg.data && typeof msg.data === 'object' ? msg.data : {};
    const topic = String(msg.topic || '');
    if (topic === 'vm.log') return this.log(data.id, data.lines);
    const part = this.parts[p] || (this.parts[p] = normalize(p, {}));
    if (p === 'vmm') return vmmEvent(part, topic, data, msg.time) ? ['vmm'] : [];
    if (p === 'kms') return kmsEvent(part, topic, data, msg.time) ? ['kms'] : [];
    return gatewayEvent(part, topic, data, msg.time) ? ['gateway'] : [];
  }

  /** Follow the logs of VM `id` (null: none): the lines kept so far are dropped. */
  followLogs(id) {
    this.logId = id;
    this.logLines = [];
    this.logError = null;
  }

  log(id, lines) {
    if (id == null || id !== this.logId || !Array.isArray(lines)) return [];
    for (const l of lines) this.logLines.push(l);
    if (this.logLines.length > MAX_LOG_LINES) this.logLines.splice(0, this.logLines.length - MAX_LOG_LINES);
    return ['log'];
  }

  /** The VM `id` of the VMM part, or undefined. */
  vm(id) {
    return (this.parts.vmm?.vms || []).find((v) => v.id === id);
  }
}

function normalize(p, s) {
  const o = { ...s };
  if (p === 'vmm') {
    const now = Date.now();
    o.vms = Array.isArray(o.vms) ? o.vms.map((v) => ({ ...v, events: Array.isArray(v.events) ? v.events : [], uptime_at: now })) : [];
    o.images = Array.isArray(o.images) ? o.images : [];
  } else if (p === 'kms') {
    o.decisions = Array.isArray(o.decisions) ? o.decisions.slice(0, MAX_DECISIONS) : [];
    o.policies = Array.isArray(o.policies) ? o.policies : [];
  } else {
    o.instances = Array.isArray(o.instances) ? o.instances : [];
    o.routes = Array.isArray(o.routes) ? o.routes : [];
    o.conns = o.conns && typeof o.conns === 'object' ? o.conns : { total: 0, by_app: {} };
  }
  return o;
}

// The VM fields an event may carry (the rest of `data` is the event's own).
const VM_FIELDS = ['name', 'status', 'boot_progress', 'boot_error', 'shutdown_progress', 'uptime',
  'ports', 'app_id', 'instance_id', 'app_url', 'image', 'exited_at'];

function vmmEvent(part, topic, data, time) {
  const id = data.id;
  if (id == null) {
    if (Array.isArray(data.images)) {
      part.images = data.images;
      return true;
    }
    return false;
  }
  let i = part.vms.findIndex((v) => v.id === id);
  if (topic === 'vm.status' && (data.status === 'removed' || data.removed === true)) {
    if (i >= 0) part.vms.splice(i, 1);
    return i >= 0;
  }
  if (i < 0) {
    part.vms.push({ id, name: data.name || id, status: 'unknown', boot_progress: '', ports: [], events: [] });
    i = part.vms.length - 1;
  }
  const vm = part.vms[i];
  for (const k of VM_FIELDS) {
    if (data[k] !== undefined && data[k] !== null) vm[k] = data[k];
  }
  if (data.uptime !== undefined) vm.uptime_at = Date.now();
  if (Array.isArray(data.events)) vm.events = data.events.slice(-MAX_VM_EVENTS);
  if (topic === 'vm.event' || topic.startsWith('vmm.') || topic.startsWith('qemu.')) {
    const name = data.event || (topic === 'vm.event' ? 'event' : topic);
    const body = data.body !== undefined ? data.body : data.payload;
    vm.events.push({ event: name, body: body === undefined ? '' : String(body),
      timestamp: data.timestamp || (typeof time === 'number' ? Math.round(time * 1000) : Date.now()) });
    if (vm.events.length > MAX_VM_EVENTS) vm.events.splice(0, vm.events.length - MAX_VM_EVENTS);
    if (name === 'boot.progress' && body !== undefined) vm.boot_progress = String(body);
    if (name === 'boot.error' && body !== undefined) vm.boot_error = String(body);
  }
  return true;
}

/** A decision as the panels show it, from the ring's form or the event bus's. */
export function decision(d, time) {
  return {
    time: d.time ?? time,
    kind: d.kind ?? d.scope ?? '',
    app_id: d.app_id ?? '',
    instance_id: d.instance_id ?? '',
    compose_hash: d.compose_hash ?? '',
    allowed: d.allowed === true,
    reason: d.reason ?? '',
    policy_version: d.policy_version ?? '',
    policy_sha256: d.policy_sha256 ?? '',
    policy: d.policy ?? '',
  };
}

function kmsEvent(part, topic, data, time) {
  if (topic === 'kms.decision') {
    part.decisions.unshift(decision(data, time));
    if (part.decisions.length > MAX_DECISIONS) part.decisions.length = MAX_DECISIONS;
    return true;
  }
  if (topic === 'policy.reload') return policyReload(part, data, time);
  return false;
}

// A policy.reload event (either part): the policy's version and sha256, or why the reload was
// refused (the previous policy stays active).
function policyReload(part, data, time) {
  if (!Array.isArray(part.policies)) part.policies = [];
  const name = data.name || data.host || 'policy';
  let pol = part.policies.find((x) => (data.host && x.host === data.host) || x.name === name);
  if (!pol && part.policies.length === 1) pol = part.policies[0];
  if (!pol) {
    pol = { name, host: data.host };
    part.policies.push(pol);
  }
  if (data.ok === false) {
    pol.error = String(data.error || 'rejected');
    pol.rejected_sha256 = data.sha256;
  } else {
    delete pol.error;
    delete pol.rejected_sha256;
    if (data.name !== undefined) pol.name = data.name;
    if (data.version !== undefined) pol.version = data.version;
    if (data.sha256 !== undefined) pol.sha256 = data.sha256;
  }
  pol.reloaded_at = typeof time === 'number' ? time : Date.now() / 1000;
  return true;
}

function gatewayEvent(part, topic, data, time) {
  if (topic === 'policy.reload') return policyReload(part, data, time);
  if (topic === 'gateway.conns') {
    part.conns = data;
    return true;
  }
  let changed = false;
  for (const k of ['instances', 'routes', 'conns', 'wg', 'cluster']) {
    if (data[k] !== undefined) {
      part[k] = data[k];
      changed = true;
    }
  }
  return changed;
}
