// SPDX-License-Identifier: Apache-2.0
// The dashboard in headless Chromium (playwright-core, /usr/bin/chromium), driven by
// tests/functional/dashboard_browser_test.sh against a real KMS, gateway and VMM: log in with
// the one-time token, see the security lint's findings in the deploy form (errors highlighted,
// following the compose), deploy an app through the form (its env encrypted in the page, the
// LAUNCH_TOKEN check on), watch it reach running and its log lines arrive, see it in the
// gateway and KMS panels, open it through the gateway's TLS route (the app echoes the env
// var), stop and remove it. Prints "ok - ..." / "not ok - ..." lines for the shell to count;
// screenshots go to ARTIFACTS. Configuration from the environment (no secret in argv):
//   PW_MODULE      the playwright-core directory      DASH_URL  http://HOST:PORT of the VMM's dashboard
//   LOGIN_FILE     the one-time login token's file    ARTIFACTS screenshots directory
//   APP_COMPOSE    the app-compose JSON (file)        GREETING  the env value the app echoes
//   GW_HOST_RULES  Chromium --host-resolver-rules    IMAGE     the image name
import { createRequire } from 'node:module';
import { readFileSync, mkdirSync } from 'node:fs';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const { chromium } = createRequire(env('PW_MODULE') + '/')('playwright-core');
const ART = env('ARTIFACTS');
mkdirSync(ART, { recursive: true });

let failures = 0;
const ok = (name) => console.log('ok - ' + name);
const notOk = (name, why) => {
  failures++;
  console.log('not ok - ' + name);
  if (why) console.log('  ' + String(why).split('\n').join('\n  '));
};
async function step(name, fn) {
  try {
    const r = await fn();
    ok(name + (typeof r === 'string' && r ? ` (${r})` : ''));
    return true;
  } catch (e) {
    notOk(name, e && e.stack ? e.message : e);
    return false;
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu',
    `--host-resolver-rules=${env('GW_HOST_RULES')}`],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, ignoreHTTPSErrors: true });
const page = await context.newPage();
const pageErrors = [];
page.on('pageerror', (e) => pageErrors.push(e.message));
page.on('console', (m) => { if (m.type() === 'error') pageErrors.push('console: ' + m.text()); });
const shot = (name, p = page) => p.screenshot({ path: `${ART}/${name}.png`, fullPage: true });
const DASH = env('DASH_URL');
const GREETING = env('GREETING');
let vmId = null, appId = null;

async function main() {
  // ---- login ----
  const token = readFileSync(env('LOGIN_FILE'), 'utf8').trim();
  if (!(await step('login: the one-time token opens a session and leaves the address bar', async () => {
    await page.goto(`${DASH}/dashboard/login?once=${encodeURIComponent(token)}`);
    const url = new URL(page.url());
    if (url.pathname !== '/dashboard/' || url.search) throw new Error('landed on ' + page.url());
  }))) return;
  await step('the session cookie is HttpOnly and SameSite=Strict', async () => {
    const c = (await context.cookies(DASH)).filter((x) => x.httpOnly);
    if (!c.length || c.some((x) => x.sameSite !== 'Strict')) throw new Error(JSON.stringify(await context.cookies(DASH)));
  });
  await step('no secret in localStorage or sessionStorage', async () => {
    const n = await page.evaluate(() => localStorage.length + sessionStorage.length);
    if (n) throw new Error(n + ' entries');
  });
  if (!(await step('the websocket goes live (snapshot of the vmm, kms and gateway parts)', async () => {
    await page.waitForSelector('#conn.conn-live', { timeout: 15000 });
    await page.waitForFunction(() => {
      const p = window.moonstackDashboard.store.parts;
      return p.vmm && p.kms && p.gateway;
    }, null, { timeout: 15000 });
  }))) return;

  // ---- deploy ----
  await page.click('#deploy > summary');
  await page.fill('#d-name', 'browser-app');
  await page.selectOption('#d-image', env('IMAGE'));
  await page.fill('#d-memory', '256');
  await step('the deploy form shows the security lint before a deploy, errors highlighted', async () => {
    await page.fill('#d-compose', 'services:\n  web:\n    image: nginx:latest\n    privileged: true\n');
    await page.waitForFunction(() => !document.getElementById('d-lint').hidden &&
      document.querySelector('#d-lint-list .finding-error[data-id="privileged-container"]'), null, { timeout: 10000 });
    const errs = await page.$$eval('#d-lint-list .finding-error .finding-field', (els) => els.map((e) => e.textContent));
    for (const f of ['docker_compose_file.services.web.image (line 3)', 'docker_compose_file.services.web.privileged (line 4)']) {
      if (!errs.includes(f)) throw new Error(`no error finding at ${f}: ${errs.join(', ')}`);
    }
    const summary = await page.textContent('#d-lint-summary');
    if (!/2 error\(s\)/.test(summary)) throw new Error(summary);
    const cls = await page.getAttribute('#d-lint', 'class');
    if (!/lint-errors/.test(cls)) throw new Error('the panel is not marked as having errors: ' + cls);
    const weight = await page.$eval('#d-lint-list .finding-error .finding-message', (el) => getComputedStyle(el).fontWeight);
    if (Number(weight) < 600) throw new Error('error findings are not highlighted: font-weight ' + weight);
    await shot('00-deploy-lint');
    return summary;
  });
  await page.fill('#d-compose', readFileSync(env('APP_COMPOSE'), 'utf8'));
  await page.fill('#d-env', `GREETING=${GREETING}\n`);
  await page.check('#d-launch');
  await page.waitForFunction(() => /^[0-9a-f]{40}$/.test(document.getElementById('d-appid-preview').textContent));
  await step('the lint panel follows the compose: the app to deploy has no errors, the LAUNCH_TOKEN check counts', async () => {
    await page.waitForFunction(() => /0 error\(s\)/.test(document.getElementById('d-lint-summary').textContent) &&
      document.querySelector('#d-lint-list [data-id="public-logs"]'), null, { timeout: 10000 });
    const ids = await page.$$eval('#d-lint-list .finding', (els) => els.map((e) => e.dataset.id));
    if (ids.includes('encrypted-env-unauthenticated')) throw new Error('the LAUNCH_TOKEN check was not recognised: ' + ids.join(', '));
    return ids.join(', ');
  });
  appId = await page.textContent('#d-appid-preview');
  await shot('01-deploy-form');
  if (!(await step('deploy through the form: env encrypted in the page, CreateVm', async () => {
    await page.click('#d-submit');
    await page.waitForFunction(() => /Deployed|failed/.test(document.getElementById('d-msg').textContent), null, { timeout: 30000 });
    const msg = await page.textContent('#d-msg');
    const m = /as VM (\S+) \(app ([0-9a-f]{40})\)/.exec(msg);
    if (!m) throw new Error(msg);
    vmId = m[1];
    if (m[2] !== appId) throw new Error(`app id ${m[2]}, the preview said ${appId}`);
    return vmId;
  }))) return;
  const row = `tr[data-vm="${vmId}"]`;
  await step('the VM reaches running, its guest\'s boot done (live over the websocket)', async () => {
    // the badge says running once the guest reported `done` (booting before)
    await page.waitForSelector(`${row} .badge-running`, { timeout: 90000 });
    const ev = await page.textContent('#vm-events');
    if (!/boot\.progress\s*done/.test(ev)) throw new Error('events: ' + ev);
  });
  await step('its log lines arrive in the log pane (the app started after the LAUNCH_TOKEN check)', async () => {
    await page.waitForFunction(() => {
      const t = document.getElementById('vm-logs').textContent;
      return t.includes('APP_LAUNCH_TOKEN checked OK') && t.includes('app listening on 8080');
    }, null, { timeout: 60000 });
  });
  await step('events list the VM\'s life (vmm.created, boot progress)', async () => {
    await page.waitForFunction(() => /vmm\.created|created/.test(document.getElementById('vm-events').textContent), null, { timeout: 10000 });
  });
  await step('uptime ticks', async () => {
    const a = await page.textContent(`${row} [data-uptime]`);
    await page.waitForTimeout(2200);
    const b = await page.textContent(`${row} [data-uptime]`);
    if (a === b) throw new Error(`${a} then ${b}`);
  });
  await page.evaluate(() => window.scrollTo(0, 0));
  await shot('02-vm-running');

  // ---- through the gateway ----
  let link = null;
  await step('the app link through the gateway (https://<instance>-8080.<base_domain>)', async () => {
    await page.waitForFunction(() => document.getElementById('vm-port-link')?.href?.startsWith('https://'), null, { timeout: 30000 });
    link = await page.getAttribute('#vm-port-link', 'href');
    return link;
  });
  if (link) {
    const app = await context.newPage();
    await step('the app answers through the gateway\'s TLS route with the env var encrypted in the browser', async () => {
      let body = '';
      for (let i = 0; i < 60; i++) {
        try {
          const r = await app.goto(link, { timeout: 5000 });
          body = await app.textContent('body');
          if (r && r.ok() && body.includes(GREETING)) return body.trim();
        } catch (e) {
          body = e.message;
        }
        await app.waitForTimeout(1000);
      }
      throw new Error('last answer: ' + body);
    });
    await shot('03-app-through-gateway', app);
    await app.close();
  }
  await step('the gateway panel lists the instance with a WireGuard handshake', async () => {
    await page.click('[data-tab=gateway]');
    await page.waitForFunction((a) => (window.moonstackDashboard.store.parts.gateway?.instances || [])
      .some((i) => i.app_id === a && typeof i.handshake_age === 'number'), appId, { timeout: 60000 });
    await page.waitForSelector('#gw-instances .badge-fresh', { timeout: 10000 });
  });
  await shot('04-gateway');
  await step('the KMS panel shows the app\'s allowed decision', async () => {
    await page.click('[data-tab=kms]');
    await page.waitForFunction((a) => (window.moonstackDashboard.store.parts.kms?.decisions || [])
      .some((d) => d.app_id === a && d.allowed === true), appId, { timeout: 30000 });
    await page.waitForSelector('#kms-rows .badge-allowed');
  });
  await shot('05-kms');
  await page.click('[data-tab=policies]');
  await shot('06-policies');

  // ---- phone ----
  await page.click('[data-tab=vms]');
  await page.setViewportSize({ width: 390, height: 844 });
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.waitForTimeout(300);
  await step('phone viewport: no horizontal scrolling, the VM shown as a card', async () => {
    const w = await page.evaluate(() => document.documentElement.scrollWidth);
    if (w > 390) throw new Error('page is ' + w + ' px wide');
    const display = await page.$eval(`${row} td`, (td) => getComputedStyle(td).display);
    if (display === 'table-cell') throw new Error('still a table');
  });
  await page.screenshot({ path: `${ART}/07-phone.png` });
  await shot('07-phone-full');
  await page.setViewportSize({ width: 1280, height: 900 });

  // ---- stop, remove ----
  await step('Stop: the VM stops', async () => {
    await page.click(`${row} button[aria-label="Stop browser-app"]`);
    await page.waitForSelector(`${row} .badge-stopped, ${row} .badge-exited`, { timeout: 60000 });
  });
  await shot('08-stopped');
  await step('Remove (asks to confirm): the VM is gone', async () => {
    await page.click(`${row} button[data-remove]`);
    await page.waitForFunction((sel) => /Confirm/.test(document.querySelector(sel + ' button[data-remove]')?.textContent || ''), row);
    await page.click(`${row} button[data-remove]`);
    await page.waitForSelector(row, { state: 'detached', timeout: 60000 });
  });
  await shot('09-removed');
  await step('no script error on the page', async () => {
    const errs = pageErrors.filter((e) => !/favicon/.test(e));
    if (errs.length) throw new Error(errs.join('\n'));
  });
}

try {
  await main();
} catch (e) {
  notOk('the browser run', e.stack || e);
  await shot('99-failure').catch(() => {});
} finally {
  console.log('VM ' + (vmId || '-') + ' APP ' + (appId || '-'));
  await browser.close();
}
process.exit(failures ? 1 : 0);
