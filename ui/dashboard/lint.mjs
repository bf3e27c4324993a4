// SPDX-License-Identifier: Apache-2.0
// The deploy form's security lint panel: the app-compose about to be deployed goes to POST
// /dashboard/api/lint (moonstack.compose.lint on the hub) and its findings are listed before
// the deploy — severity, rule id, field (and line), what is wrong and the fix; errors first
// and highlighted. A newer compose supersedes an answer still on its way.
'use strict';

import { $, fill, h } from './dom.mjs';
import { postJson } from './api.mjs';

let seq = 0;

function finding(f) {
  const where = f.field + (f.line ? ` (line ${f.line})` : '');
  return h('li', { class: `finding finding-${f.severity}${f.suppressed ? ' finding-suppressed' : ''}`,
    'data-id': f.id, 'data-severity': f.severity },
  h('span', { class: `badge badge-lint-${f.severity}`, text: f.severity }), ' ',
  h('code', { class: 'finding-id', text: f.id }), ' ',
  h('code', { class: 'finding-field', text: where }), ' ',
  h('span', { class: 'finding-message', text: f.message }),
  f.suppressed ? h('span', { class: 'muted', text: ` [waived: ${f.suppressed}]` }) : null,
  h('div', { class: 'finding-fix muted', text: 'fix: ' + f.fix }));
}

/** Show `r` (the lint answer) or `error` (a message) in the panel. */
export function renderLint(r, error) {
  const panel = $('d-lint');
  panel.hidden = false;
  if (error) {
    panel.className = 'lint lint-failed';
    $('d-lint-summary').textContent = 'Security lint: ' + error;
    fill($('d-lint-list'));
    return;
  }
  const c = r.counts;
  panel.className = 'lint ' + (c.error ? 'lint-errors' : c.warning ? 'lint-warnings' : 'lint-clean');
  $('d-lint-summary').textContent = `Security lint: ${c.error} error(s), ${c.warning} warning(s), ` +
    `${c.info} info` + (c.suppressed ? `, ${c.suppressed} waived` : '') +
    (c.error ? ' — fix the errors before deploying to production' : '');
  fill($('d-lint-list'), r.findings.map(finding));
}

/** Hide the panel (no compose). */
export function clearLint() {
  seq++;
  $('d-lint').hidden = true;
}

/** Lint the app-compose text `compose` and show the findings (the latest call wins). */
export async function lintCompose(compose) {
  const mine = ++seq;
  try {
    const r = await postJson('/dashboard/api/lint', { compose });
    if (mine === seq) renderLint(r);
  } catch (e) {
    if (mine === seq) renderLint(null, e.message.replace(/^HTTP \d+: /, ''));
  }
}
