// SPDX-License-Identifier: Apache-2.0
// The app-compose.json of a deploy: taken as given (app-compose JSON) or made from a
// docker-compose YAML as upstream's `vmm-cli.py compose` does (manifest_version 2, runner
// docker-compose, docker_compose_file, kms_enabled, gateway_enabled, public_logs, ...,
// allowed_envs the env names; JSON with 4-space indent). Then, as upstream's VMM UI: an
// APP_LAUNCH_TOKEN env pins launch_token_hash = sha256(token), and the LAUNCH_TOKEN check
// adds a random APP_LAUNCH_TOKEN and a pre_launch_script that refuses to launch without it.
// app_id is the compose hash's first 20 bytes unless one is given.
'use strict';

import { randomToken, sha256Hex } from './envcrypt.mjs';

/** The env name of the launch token (upstream's APP_LAUNCH_TOKEN pattern). */
export const LAUNCH_TOKEN_ENV = 'APP_LAUNCH_TOKEN';

const CHECK_MARK = '# LAUNCH_TOKEN check';

/** The pre_launch_script that checks the launch token against `hash` (hex SHA-256): sourced by
 *  the guest's launcher under `set -euo pipefail`, it ends the launch (exit 1) on a mismatch. */
export function launchCheckScript(hash) {
  return [
    `${CHECK_MARK} (added by the moonstack dashboard, as upstream's VMM UI): the app launches`,
    '# only if the encrypted env carries the APP_LAUNCH_TOKEN whose sha256 is launch_token_hash.',
    `EXPECTED_TOKEN_HASH=${hash}`,
    'ACTUAL_TOKEN_HASH=$(printf %s "${APP_LAUNCH_TOKEN:-}" | sha256sum | cut -d" " -f1)',
    'if [ "$EXPECTED_TOKEN_HASH" != "$ACTUAL_TOKEN_HASH" ]; then',
    '  echo "Error: incorrect APP_LAUNCH_TOKEN, please set the correct APP_LAUNCH_TOKEN in the env" >&2',
    '  exit 1',
    'fi',
    'echo "APP_LAUNCH_TOKEN checked OK"',
    '',
  ].join('\n');
}

const CHECK_BLOCK = /# LAUNCH_TOKEN check[^]*?echo "APP_LAUNCH_TOKEN checked OK"\n?/;

/** `pre` (a pre_launch_script) with the launch token check for `hash` first: an earlier check
 *  block (another token's) is replaced, the rest of the script kept after it. */
export function withLaunchCheck(pre, hash) {
  const rest = pre.replace(CHECK_BLOCK, '').replace(/^\n+/, '');
  return launchCheckScript(hash) + (rest ? '\n' + rest : '');
}

/** 'app-compose' when `text` is a JSON object that looks like an app-compose (runner,
 *  manifest_version or docker_compose_file), else 'docker-compose'. */
export function detectKind(text) {
  try {
    const o = JSON.parse(text);
    if (o && typeof o === 'object' && !Array.isArray(o) &&
        ('runner' in o || 'manifest_version' in o || 'docker_compose_file' in o)) return 'app-compose';
  } catch (e) {
    // not JSON: a docker-compose YAML
  }
  return 'docker-compose';
}

/** Defaults of the options a docker-compose YAML is wrapped with. */
export const DEFAULT_OPTIONS = Object.freeze({
  kms_enabled: true, gateway_enabled: true, public_logs: true, public_sysinfo: true,
  local_key_provider_enabled: false, key_provider_id: '', no_instance_id: false, secure_time: false,
});

/** The app-compose object of a docker-compose YAML (as vmm-cli.py compose). */
export function fromDockerCompose(yaml, name, options = {}) {
  const o = { ...DEFAULT_OPTIONS, ...options };
  return {
    manifest_version: 2,
    name,
    runner: 'docker-compose',
    docker_compose_file: yaml,
    kms_enabled: !!o.kms_enabled,
    gateway_enabled: !!o.gateway_enabled,
    local_key_provider_enabled: !!o.local_key_provider_enabled,
    key_provider_id: String(o.key_provider_id || ''),
    public_logs: !!o.public_logs,
    public_sysinfo: !!o.public_sysinfo,
    allowed_envs: [],
    no_instance_id: !!o.no_instance_id,
    secure_time: !!o.secure_time,
  };
}

/** Whether an app-compose object uses the KMS (key_provider, else kms_enabled). */
export function usesKms(app) {
  if (app.key_provider != null) return app.key_provider === 'kms';
  return app.kms_enabled === true;
}

/** Build the deploy's compose. spec = { text, kind ('auto'|'app-compose'|'docker-compose'),
 *  name, options (for a docker-compose), envs [{key, value}], launchCheck (bool), launchToken
 *  (the token launchCheck adds; default a new random one) }. Returns
 *  { compose (the exact app-compose.json text), app (its object), envs (with a generated
 *  APP_LAUNCH_TOKEN when launchCheck), composeHash, appId, notes [strings] }. Throws on bad
 *  input (invalid JSON, env without KMS). An app-compose given as JSON is kept byte for byte
 *  unless allowed_envs, launch_token_hash or pre_launch_script must change. */
export async function buildCompose(spec) {
  const kind = !spec.kind || spec.kind === 'auto' ? detectKind(spec.text) : spec.kind;
  const notes = [];
  let envs = (spec.envs || []).slice();
  let app, changed;
  if (kind === 'app-compose') {
    try {
      app = JSON.parse(spec.text);
    } catch (e) {
      throw new Error('app-compose: not JSON: ' + e.message);
    }
    if (!app || typeof app !== 'object' || Array.isArray(app)) throw new Error('app-compose: not a JSON object');
    changed = false;
  } else {
    if (!String(spec.text).trim()) throw new Error('docker-compose: empty');
    if (!spec.name) throw new Error('a name is needed for a docker-compose app');
    app = fromDockerCompose(spec.text, spec.name, spec.options);
    changed = true;
  }
  if (spec.launchCheck && !envs.some((e) => e.key === LAUNCH_TOKEN_ENV)) {
    envs.push({ key: LAUNCH_TOKEN_ENV, value: spec.launchToken || randomToken(32) });
    notes.push('a random APP_LAUNCH_TOKEN was added to the encrypted env');
  }
  if (envs.length && !usesKms(app)) {
    throw new Error('encrypted env vars need the KMS: set kms_enabled (or key_provider "kms")');
  }
  const allowed = Array.isArray(app.allowed_envs) ? app.allowed_envs.slice() : [];
  for (const { key } of envs) {
    if (!allowed.includes(key)) allowed.push(key);
  }
  if (envs.length && JSON.stringify(allowed) !== JSON.stringify(app.allowed_envs || [])) {
    app.allowed_envs = allowed;
    changed = true;
    if (kind === 'app-compose') notes.push('allowed_envs now lists the env names');
  }
  const token = envs.find((e) => e.key === LAUNCH_TOKEN_ENV);
  if (token) {
    const hash = await sha256Hex(token.value);
    if (app.launch_token_hash !== hash) {
      app.launch_token_hash = hash;
      changed = true;
    }
    if (spec.launchCheck) {
      const pre = typeof app.pre_launch_script === 'string' ? app.pre_launch_script : '';
      const script = withLaunchCheck(pre, hash);
      if (script !== pre) {
        app.pre_launch_script = script;
        changed = true;
        notes.push('pre_launch_script checks the launch token');
      }
    }
  }
  const compose = changed ? JSON.stringify(app, null, 4) : spec.text;
  const composeHash = await sha256Hex(compose);
  return { compose, app, envs, composeHash, appId: composeHash.slice(0, 40), kind, notes };
}
