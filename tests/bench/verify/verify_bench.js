// Benchmark peer: @phala/dcap-qvl (pure JS) on the same quote, collateral and time as
// verify_bench.lua. Prints the status, the batch layout and the median time per quote in µs.
const fs = require('fs');
const { verify } = require('@phala/dcap-qvl');

const dir = process.argv[2];
const NOW = 1752919234;
const quote = new Uint8Array(fs.readFileSync(`${dir}/dcap-qvl/tdx_quote`));
const collateral = JSON.parse(fs.readFileSync(`${dir}/dcap-qvl/tdx_quote_collateral.json`, 'utf8'));
const report = verify(quote, collateral, NOW);
if (report.status !== 'UpToDate') throw new Error(`unexpected status ${report.status}`);

const BATCHES = 31, PER_BATCH = 20;
const times = [];
for (let b = 0; b < BATCHES; b++) {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < PER_BATCH; i++) verify(quote, collateral, NOW);
  times.push(Number(process.hrtime.bigint() - t0) / 1e3 / PER_BATCH);
}
times.sort((a, b) => a - b);
console.log(`status ${report.status}`);
console.log(`batches ${BATCHES} x ${PER_BATCH}`);
console.log(`median_us ${times[(BATCHES - 1) / 2].toFixed(2)}`);
