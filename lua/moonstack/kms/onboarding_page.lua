-- SPDX-License-Identifier: Apache-2.0
-- The page of onboarding mode (GET / on the onboarding listener): bootstrap fresh keys, or
-- onboard from a running KMS, then finish. It only calls the Onboard pRPC methods; every value
-- it shows is put in the page as text (textContent), never as markup.
return [[<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>moonstack KMS onboarding</title>
<style>
body { font: 15px/1.5 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; }
fieldset { margin: 1rem 0; border: 1px solid #bbb; border-radius: 6px; }
input { width: 100%; box-sizing: border-box; padding: .3rem; margin: .2rem 0 .6rem; }
button { padding: .4rem 1rem; }
pre { background: #f4f4f4; padding: .6rem; white-space: pre-wrap; word-break: break-all; }
</style></head><body>
<h1>KMS onboarding</h1>
<p>This KMS has no root keys yet. Create them here, or copy them from a running KMS, then finish:
the KMS then starts serving on its keys.</p>
<fieldset><legend>Bootstrap: new root keys</legend>
<label>RPC domain <input id="b-domain" placeholder="kms.example.com"></label>
<button id="bootstrap">Bootstrap</button></fieldset>
<fieldset><legend>Onboard: copy the keys of a running KMS</legend>
<label>Source KMS URL <input id="o-url" placeholder="https://kms-a.example.com:8000"></label>
<label>RPC domain <input id="o-domain" placeholder="kms-b.example.com"></label>
<button id="onboard">Onboard</button></fieldset>
<p><button id="info">Attestation info</button> <button id="finish">Finish</button></p>
<pre id="out">-</pre>
<script>
const out = document.getElementById('out');
async function call(method, body) {
  out.textContent = method + '...';
  try {
    const r = await fetch('/prpc/Onboard.' + method + '?json', { method: 'POST',
      headers: { 'content-type': 'application/json' }, body: JSON.stringify(body || {}) });
    out.textContent = method + ': HTTP ' + r.status + '\n' + JSON.stringify(await r.json(), null, 2);
  } catch (e) { out.textContent = method + ' failed: ' + e; }
}
const val = id => document.getElementById(id).value.trim();
document.getElementById('bootstrap').onclick = () => call('Bootstrap', { domain: val('b-domain') });
document.getElementById('onboard').onclick = () =>
  call('Onboard', { source_url: val('o-url'), domain: val('o-domain') });
document.getElementById('info').onclick = () => call('GetAttestationInfo');
document.getElementById('finish').onclick = () => call('Finish');
</script></body></html>
]]
