// SPDX-License-Identifier: Apache-2.0
// The deploy form: an app-compose JSON or a docker-compose YAML (typed, pasted or from a
// file) made into the app-compose (compose.mjs), its env encrypted here to the app's KMS env
// key (GetAppEnvEncryptPubKey through the VMM, envcrypt.mjs), the LAUNCH_TOKEN check, then
// CreateVm. The compose hash and app id are previewed as the form changes (with the same
// launch token the deploy will use), and so are the security lint's findings (lint.mjs). The env's values leave the page only encrypted, and the
// form forgets them once the VM is created.
'use strict';

import { $, fill, h } from './dom.mjs';
import { prpc } from './api.mjs';
import { encryptEnv, parseEnvText, checkEnv, toHex, randomToken } from './envcrypt.mjs';
import { buildCompose, detectKind } from './compose.mjs';
import { lintCompose, clearLint, renderLint } from './lint.mjs';

/** A PortMapping of '[tcp|udp:][ADDR:]HOST:VM' (as `moonstack vm deploy --port`), or null. */
export function parsePort(s) {
  const parts = s.trim().split(':');
  let protocol = 'tcp';
  if (parts[0] === 'tcp' || parts[0] === 'udp') protocol = parts.shift();
  const host_address = parts.length === 3 ? parts.shift() : '';
  if (parts.length !== 2) return null;
  const host_port = Number(parts[0]), vm_port = Number(parts[1]);
  if (!Number.isInteger(host_port) || !Number.isInteger(vm_port) || host_port < 1 || vm_port < 1 ||
      host_port > 65535 || vm_port > 65535) return null;
  return { protocol, host_address, host_port, vm_port };
}

function readFile(input) {
  return new Promise((resolve, reject) => {
    const f = input.files && input.files[0];
    if (!f) return resolve(null);
    const r = new FileReader();
    r.onload = () => resolve(String(r.result));
    r.onerror = () => reject(r.error);
    r.readAsText(f);
  });
}

/** Set up the form. ctx = { store, vms (the VMs panel) }. Returns { renderImages }. */
export function initDeploy(ctx) {
  let launchToken = randomToken(32); // one per deploy: the preview's hash is the deploy's
  let previewTimer = null;

  const val = (id) => $(id).value;
  const options = () => ({
    kms_enabled: $('o-kms').checked, gateway_enabled: $('o-gateway').checked,
    public_logs: $('o-public-logs').checked, public_sysinfo: $('o-public-sysinfo').checked,
    local_key_provider_enabled: $('o-local-key').checked, no_instance_id: $('o-no-instance').checked,
    secure_time: $('o-secure-time').checked,
  });

  function say(text, kind) {
    const el = $('d-msg');
    el.className = 'msg' + (kind ? ' ' + kind : '');
    el.textContent = text;
  }

  async function build() {
    const envs = parseEnvText(val('d-env'));
    checkEnv(envs);
    return buildCompose({ text: val('d-compose'), kind: val('d-kind'), name: val('d-name').trim(),
      options: options(), envs, launchCheck: $('d-launch').checked, launchToken });
  }

  function kindShown() {
    const k = val('d-kind');
    return k === 'auto' ? detectKind(val('d-compose')) : k;
  }

  async function preview() {
    $('d-options').hidden = kindShown() !== 'docker-compose';
    if (!val('d-compose').trim()) {
      $('d-hash').textContent = '-';
      $('d-appid-preview').textContent = '-';
      $('d-notes').textContent = '';
      clearLint();
      return;
    }
    try {
      const r = await build();
      $('d-hash').textContent = r.composeHash;
      const given = val('d-appid').trim().replace(/^0x/i, '').toLowerCase();
      $('d-appid-preview').textContent = given || r.appId;
      $('d-notes').textContent = `${r.kind === 'docker-compose' ? 'docker-compose YAML wrapped into an app-compose' : 'app-compose JSON'}` +
        (r.notes.length ? '; ' + r.notes.join('; ') : '');
      lintCompose(r.compose);
    } catch (e) {
      $('d-hash').textContent = '-';
      $('d-appid-preview').textContent = '-';
      $('d-notes').textContent = e.message;
      renderLint(null, 'not linted: ' + e.message);
    }
  }
  function schedulePreview() {
    clearTimeout(previewTimer);
    previewTimer = setTimeout(preview, 250);
  }
  for (const el of $('deploy-form').querySelectorAll('input, textarea, select')) {
    if (el.type !== 'file') el.addEventListener('input', schedulePreview);
    if (el.type === 'checkbox' || el.tagName === 'SELECT') el.addEventListener('change', schedulePreview);
  }

  $('d-file').addEventListener('change', async () => {
    try {
      const text = await readFile($('d-file'));
      if (text !== null) {
        $('d-compose').value = text;
        if (!val('d-name').trim()) {
          const n = ($('d-file').files[0].name || '').replace(/\.(json|ya?ml)$/i, '').replace(/[^A-Za-z0-9_.-]/g, '-');
          try {
            const o = JSON.parse(text);
            $('d-name').value = typeof o.name === 'string' && o.name ? o.name : n;
          } catch (e) {
            $('d-name').value = n;
          }
        }
        schedulePreview();
      }
    } catch (e) {
      say('Could not read the file: ' + e.message, 'error');
    }
  });
  $('d-env-file').addEventListener('change', async () => {
    try {
      const text = await readFile($('d-env-file'));
      if (text !== null) {
        const cur = val('d-env');
        $('d-env').value = cur && !cur.endsWith('\n') ? cur + '\n' + text : cur + text;
        $('d-env-file').value = '';
        schedulePreview();
      }
    } catch (e) {
      say('Could not read the env file: ' + e.message, 'error');
    }
  });

  $('deploy-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const btn = $('d-submit');
    btn.disabled = true;
    try {
      const name = val('d-name').trim();
      if (!name) throw new Error('give the VM a name');
      if (!val('d-image')) throw new Error('no image: the VMM lists none');
      const ports = [];
      for (const line of val('d-ports').split('\n')) {
        if (!line.trim()) continue;
        const p = parsePort(line);
        if (!p) throw new Error(`port "${line.trim()}": want [tcp|udp:][ADDR:]HOST:VM`);
        ports.push(p);
      }
      const built = await build();
      const given = val('d-appid').trim().replace(/^0x/i, '').toLowerCase();
      if (given && !/^[0-9a-f]{40}$/.test(given)) throw new Error('app id: 40 hex digits');
      const appId = given || built.appId;
      const req = {
        name, image: val('d-image'), compose_file: built.compose,
        vcpu: Number(val('d-vcpu')) || 1, memory: Number(val('d-memory')) || 1024,
        disk_size: Number(val('d-disk')) || 0, ports, user_config: val('d-user-config'),
        stopped: $('d-stopped').checked,
      };
      if (given) req.app_id = given;
      if (built.envs.length) {
        say(`Encrypting ${built.envs.length} env var(s) to the env key of app ${appId}…`);
        const key = await prpc('GetAppEnvEncryptPubKey', { app_id: appId });
        if (!key.public_key) throw new Error('the KMS gave no env public key');
        req.encrypted_env = toHex(await encryptEnv(built.envs, key.public_key));
      }
      say('Creating the VM…');
      const r = await prpc('CreateVm', req);
      $('d-env').value = '';
      launchToken = randomToken(32);
      say(`Deployed ${name} as VM ${r.id} (app ${appId})${built.notes.length ? ': ' + built.notes.join('; ') : ''}.`, 'ok');
      await ctx.vms.refresh(r.id);
      ctx.vms.select(r.id);
      schedulePreview();
    } catch (e) {
      say('Deploy failed: ' + e.message, 'error');
    } finally {
      btn.disabled = false;
    }
  });

  /** Refill the image list (keeping the choice). */
  function renderImages() {
    const sel = $('d-image');
    const cur = sel.value;
    const imgs = (ctx.store.parts.vmm?.images || []).map((i) => (typeof i === 'string' ? i : i && i.name)).filter(Boolean);
    const key = imgs.join('\n');
    if (sel.dataset.key === key) return;
    sel.dataset.key = key;
    fill(sel, imgs.length ? imgs.map((n) => h('option', { value: n, text: n })) : h('option', { value: '', text: '(no images)' }));
    if (imgs.includes(cur)) sel.value = cur;
  }

  preview();
  return { renderImages };
}
