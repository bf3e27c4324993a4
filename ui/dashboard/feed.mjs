// SPDX-License-Identifier: Apache-2.0
// The live feed: the websocket /dashboard/ws of the page's daemon (the session cookie is sent
// at the upgrade), its messages handed to a callback, and reconnection with exponential
// backoff (0.5 s doubling to 15 s, with jitter; reset once a snapshot arrives). The state —
// connecting, live, reconnecting (with the time of the next try), signed-out — goes to
// onState for the page to show. send() queues nothing: a message for a closed socket is
// dropped (the page re-sends its subscriptions on each snapshot).
'use strict';

const MIN_DELAY = 500;
const MAX_DELAY = 15000;

export class Feed {
  /** opts = { url?, onMessage(msg), onState(state, detail), probe?() -> 'ok'|'signed-out'|... } */
  constructor(opts) {
    this.opts = opts;
    this.delay = MIN_DELAY;
    this.ws = null;
    this.timer = null;
    this.failures = 0;
    this.stopped = false;
  }

  url() {
    if (this.opts.url) return this.opts.url;
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return `${proto}//${location.host}/dashboard/ws`;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close();
  }

  connect() {
    clearTimeout(this.timer);
    this.opts.onState('connecting');
    let ws;
    try {
      ws = new WebSocket(this.url());
    } catch (e) {
      this.retry(String(e.message || e));
      return;
    }
    this.ws = ws;
    let live = false;
    ws.addEventListener('message', (ev) => {
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch (e) {
        return; // not ours
      }
      if (msg && msg.type === 'snapshot' && !live) {
        live = true;
        this.delay = MIN_DELAY;
        this.failures = 0;
        this.opts.onState('live');
      }
      this.opts.onMessage(msg);
    });
    ws.addEventListener('close', (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (!this.stopped) this.retry(ev.reason || (live ? 'connection closed' : 'could not connect'));
    });
    ws.addEventListener('error', () => {
      // a close event follows; nothing else to do
    });
  }

  async retry(why) {
    this.failures++;
    if (this.failures >= 2 && this.opts.probe) {
      const s = await this.opts.probe();
      if (this.stopped) return;
      if (s === 'signed-out') {
        this.opts.onState('signed-out', why);
        this.schedule(MAX_DELAY * 2); // keep trying: a login in another tab sets the cookie
        return;
      }
    }
    const jitter = 0.8 + Math.random() * 0.4;
    const wait = Math.round(this.delay * jitter);
    this.delay = Math.min(MAX_DELAY, this.delay * 2);
    this.opts.onState('reconnecting', { why, at: Date.now() + wait });
    this.schedule(wait);
  }

  schedule(ms) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), ms);
  }

  /** Reconnect now (the "retry" button). */
  now() {
    this.delay = MIN_DELAY;
    this.connect();
  }

  /** Send `obj` as JSON if the socket is open; returns whether it was sent. */
  send(obj) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(obj));
      return true;
    }
    return false;
  }
}
