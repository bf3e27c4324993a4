// SPDX-License-Identifier: Apache-2.0
// Small DOM and formatting helpers of the dashboard. Every value reaches the page as text
// (textContent, attributes): nothing a daemon or an app reports is parsed as markup.
'use strict';

/** An element: h('td', {class: 'x', title: 'y'}, child, ...) — children are nodes, strings
 *  (text), numbers, or arrays of them; null/undefined/false are skipped. Attributes: 'class',
 *  'text', 'on<event>' (a listener, not an attribute), booleans (present when true), others
 *  set as attributes. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') el.textContent = String(v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/** Replace the children of `el` with `children` (as h's). */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** The element with id `id` (throws when missing: a page/script mismatch). */
export function $(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error('no element #' + id);
  return el;
}

/** "3 s", "4 min", "2 h 5 min", "3 d 4 h" of a number of seconds. */
export function duration(s) {
  if (typeof s !== 'number' || !isFinite(s)) return '-';
  s = Math.max(0, Math.floor(s));
  if (s < 60) return s + ' s';
  if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
  if (s < 86400) return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
  return Math.floor(s / 86400) + ' d ' + Math.floor((s % 86400) / 3600) + ' h';
}

/** Seconds of an uptime as the VMM prints it ("1days 2h 3m 4s", "5s"), or of a number; NaN
 *  when it cannot be read. */
export function parseUptime(v) {
  if (typeof v === 'number') return v;
  const s = String(v || '').trim();
  if (!s) return NaN;
  let total = 0, any = false;
  const re = /(\d+(?:\.\d+)?)\s*(days?|d|h|m|min|s|ms)?/g;
  let m;
  while ((m = re.exec(s))) {
    const n = Number(m[1]);
    const unit = m[2] || 's';
    total += unit.startsWith('d') ? n * 86400 : unit === 'h' ? n * 3600 : unit === 'm' || unit === 'min' ? n * 60
      : unit === 'ms' ? n / 1000 : n;
    any = true;
  }
  return any ? total : NaN;
}

/** A local date-time of a Unix time in seconds, or of milliseconds (> 1e12). */
export function when(t) {
  if (typeof t !== 'number' || !isFinite(t) || t <= 0) return '-';
  const d = new Date(t > 1e12 ? t : t * 1000);
  return d.toLocaleString(undefined, { hour12: false });
}

/** The first n characters of a long identifier, with its full value in a title. */
export function short(id, n = 12) {
  const s = String(id || '');
  if (!s) return h('span', { class: 'muted', text: '-' });
  return h('span', { class: 'mono', title: s, text: s.length > n ? s.slice(0, n) + '…' : s });
}

/** A status badge (class by status). */
export function badge(text, kind) {
  return h('span', { class: 'badge badge-' + (kind || String(text).replace(/[^a-z]/gi, '').toLowerCase()), text });
}
