// SPDX-License-Identifier: Apache-2.0
// The SDK example app: at start it asks the guest agent (official @phala/dstack-sdk, over
// /var/run/dstack.sock) for its info, an app key, a quote over a fresh nonce and an RA-TLS
// certificate, logs one line per call, then serves on :8080
//   /             a short text summary
//   /report.json  what a verifier needs: the quote and event log, the report_data and the
//                 nonce it binds, the key's public half and signature chain, the TLS
//                 certificate chain (private keys never leave the app)
'use strict';
const crypto = require('crypto');
const http = require('http');
const { DstackClient } = require('@phala/dstack-sdk');
const { secp256k1 } = require('@noble/curves/secp256k1');

const hex = (b) => Buffer.from(b).toString('hex');

async function collect() {
  const client = new DstackClient();
  const report = { note: process.env.NOTE || '' };
  const info = await client.info();
  report.app_id = info.app_id;
  report.instance_id = info.instance_id;
  report.compose_hash = info.compose_hash;
  console.log(`sdk-example: info ok (app ${info.app_id})`);

  const key = await client.getKey('/sdk-example', 'demo');
  report.key = {
    path: '/sdk-example', purpose: 'demo',
    public_key: hex(secp256k1.getPublicKey(key.key, true)),
    signature_chain: key.signature_chain.map(hex),
  };
  console.log(`sdk-example: getKey ok (public key ${report.key.public_key.slice(0, 16)}...)`);

  const nonce = crypto.randomBytes(32);
  const reportData = crypto.createHash('sha256').update('moonstack sdk example:').update(nonce).digest();
  const quote = await client.getQuote(reportData);
  report.nonce = hex(nonce);
  report.report_data = hex(reportData);
  report.quote = quote.quote;
  report.event_log = quote.event_log;
  console.log(`sdk-example: getQuote ok (${quote.quote.length / 2} bytes)`);

  const tls = await client.getTlsKey({ subject: 'sdk-example', altNames: ['sdk-example.local'],
    withAppInfo: true });
  report.tls_certificate_chain = tls.certificate_chain;
  console.log(`sdk-example: getTlsKey ok (${tls.certificate_chain.length} certificates)`);
  return report;
}

async function main() {
  let report;
  for (let attempt = 1; ; attempt++) {
    try {
      report = await collect();
      break;
    } catch (e) {
      console.log(`sdk-example: attempt ${attempt} failed: ${e && e.message}`);
      if (attempt >= 10) process.exit(1);
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  const body = JSON.stringify(report, null, 2) + '\n';
  http.createServer((req, res) => {
    console.log(`sdk-example: ${req.method} ${req.url}`);
    if (req.url === '/report.json') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(body);
    } else if (req.url === '/') {
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(`sdk example: app ${report.app_id}, instance ${report.instance_id}\n` +
        `getKey, getQuote, getTlsKey: ok\nnote: ${report.note}\nsee /report.json\n`);
    } else {
      res.writeHead(404);
      res.end('not found\n');
    }
  }).listen(8080, () => console.log('sdk-example: serving on :8080'));
}

main();
