// SPDX-License-Identifier: Apache-2.0
// The KMS onboarding page's buttons: each calls one Onboard pRPC method (JSON) and shows the
// answer. Every value is shown as text (textContent), never as markup.
'use strict';

const out = document.getElementById('out');
const val = (id) => document.getElementById(id).value.trim();

async function call(method, body) {
  out.textContent = method + '...';
  try {
    const r = await fetch('/prpc/Onboard.' + method + '?json', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body || {}),
    });
    out.textContent = method + ': HTTP ' + r.status + '\n' + JSON.stringify(await r.json(), null, 2);
  } catch (e) {
    out.textContent = method + ' failed: ' + e;
  }
}

document.getElementById('bootstrap').onclick = () => call('Bootstrap', { domain: val('b-domain') });
document.getElementById('onboard').onclick = () =>
  call('Onboard', { source_url: val('o-url'), domain: val('o-domain') });
document.getElementById('info').onclick = () => call('GetAttestationInfo');
document.getElementById('finish').onclick = () => call('Finish');
