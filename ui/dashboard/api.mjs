// SPDX-License-Identifier: Apache-2.0
// The dashboard's calls to its daemon, same origin with the session cookie: the VMM's pRPC
// methods at /prpc/<Method> (JSON; bytes as hex), the parts' actions at /dashboard/api/...
// Every POST carries X-Moonstack-CSRF: 1 (the server refuses a cookie-authenticated POST
// without it). No secret goes in a URL.
'use strict';

/** POST `body` (JSON) to `path`; resolves to the decoded answer, rejects with an Error whose
 *  message is the server's {"error"} (or the HTTP status). */
export async function postJson(path, body) {
  let r;
  try {
    r = await fetch(path, {
      method: 'POST',
      credentials: 'same-origin',
      cache: 'no-store',
      headers: { 'content-type': 'application/json', 'x-moonstack-csrf': '1' },
      body: JSON.stringify(body || {}),
    });
  } catch (e) {
    throw new Error('network error: ' + e.message);
  }
  const text = await r.text();
  let data;
  try {
    data = text ? JSON.parse(text) : {};
  } catch (e) {
    data = { error: text.trim().slice(0, 500) };
  }
  if (!r.ok) {
    const msg = (data && (data.error || data.message)) || r.statusText;
    const err = new Error(`HTTP ${r.status}: ${msg}`);
    err.status = r.status;
    err.data = data;
    throw err;
  }
  return data;
}

/** Call the VMM's pRPC `method` with the JSON message `body`. */
export function prpc(method, body) {
  return postJson('/prpc/' + encodeURIComponent(method) + '?json', body);
}

/** POST a part's action: on the hub (the page shows the VMM part) /dashboard/api/<part>/<op>,
 *  on the part's own daemon /dashboard/api/<op>. */
export function action(part, op, body, onHub) {
  const path = onHub ? `/dashboard/api/${encodeURIComponent(part)}/${encodeURIComponent(op)}`
    : `/dashboard/api/${encodeURIComponent(op)}`;
  return postJson(path, body);
}

/** Ask the feed endpoint whether this browser is signed in (used when the websocket keeps
 *  failing): 'ok', 'signed-out' (401/403) or 'unreachable'. */
export async function probeSession() {
  try {
    const r = await fetch('/dashboard/feed?since=0', { credentials: 'same-origin', cache: 'no-store' });
    if (r.status === 401 || r.status === 403) return 'signed-out';
    return r.ok ? 'ok' : 'unreachable';
  } catch (e) {
    return 'unreachable';
  }
}
