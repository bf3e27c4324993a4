// SPDX-License-Identifier: Apache-2.0
// The dashboard's pure pieces under Node (its WebCrypto: globalThis.crypto.subtle), for
// tests/functional/dashboard_js_test.sh, which checks the output with the guest agent's
// own code. Usage: node envcrypt_check.mjs UI_DIR COMMAND ARGS...
//   encrypt PUBHEX ENVFILE       two blobs of ENVFILE's env (WebCrypto X25519, then the
//                                JavaScript fallback), one hex line each
//   compose KIND TEXTFILE NAME ENVFILE LAUNCHCHECK(0|1)
//                                buildCompose's result as JSON (compose, envs, appId, ...)
//   parse ENVFILE                parseEnvText as JSON (or the error on stderr, exit 1)
//   store MSGFILE                the Store after each message of MSGFILE (JSON lines): one
//                                JSON summary line per message
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const [dir, cmd, ...args] = process.argv.slice(2);
const mod = (name) => import(pathToFileURL(`${dir}/${name}`).href);
const env = await mod('envcrypt.mjs');
const read = (p) => readFileSync(p, 'utf8');

if (cmd === 'encrypt') {
  const envs = env.parseEnvText(read(args[1]));
  env.checkEnv(envs);
  console.log(env.toHex(await env.encryptEnv(envs, args[0])));
  console.log(env.toHex(await env.encryptEnv(envs, env.fromHex(args[0]), { pureJs: true })));
} else if (cmd === 'compose') {
  const compose = await mod('compose.mjs');
  const r = await compose.buildCompose({ kind: args[0], text: read(args[1]), name: args[2],
    envs: env.parseEnvText(read(args[3])), launchCheck: args[4] === '1' });
  console.log(JSON.stringify(r));
} else if (cmd === 'parse') {
  try {
    console.log(JSON.stringify(env.parseEnvText(read(args[0]))));
  } catch (e) {
    console.error(e.message);
    process.exit(1);
  }
} else if (cmd === 'store') {
  const { Store } = await mod('store.mjs');
  const st = new Store();
  st.followLogs('vm-1');
  for (const line of read(args[0]).split('\n')) {
    if (!line.trim()) continue;
    const changed = st.apply(JSON.parse(line));
    console.log(JSON.stringify({
      changed,
      vms: (st.parts.vmm?.vms || []).map((v) => `${v.id}:${v.status}:${v.boot_progress || ''}:${v.events.length}`),
      decisions: (st.parts.kms?.decisions || []).map((d) => `${d.allowed ? 'allow' : 'deny'}:${d.reason}:${d.policy_version}`),
      policies: (st.parts.kms?.policies || []).map((p) => `${p.name}:${p.version}:${p.error || 'ok'}`),
      down: st.down, logs: st.logLines, seq: st.seq,
    }));
  }
} else {
  console.error('unknown command ' + cmd);
  process.exit(2);
}
