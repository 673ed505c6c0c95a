// Compiles the Tolk contracts with the pinned @ton/tolk-js and writes
// build/<name>.json ({ codeBoc64, codeHashHex, tolkVersion }) for each:
// registry.tolk -> build/registry.json, channel.tolk -> build/channel.json.
'use strict';
const fs = require('fs');
const path = require('path');
const { runTolkCompiler, getTolkCompilerVersion } = require('@ton/tolk-js');

const CONTRACTS = ['registry', 'channel'];

async function compile(dir, name) {
  const result = await runTolkCompiler({
    entrypointFileName: `${name}.tolk`,
    fsReadCallback: (p) => fs.readFileSync(path.join(dir, p), 'utf-8'),
  });
  if (result.status === 'error') {
    console.error(`${name}.tolk: ${result.message}`);
    process.exit(1);
  }
  const out = {
    tolkVersion: await getTolkCompilerVersion(),
    codeBoc64: result.codeBoc64,
    codeHashHex: result.codeHashHex,
  };
  fs.mkdirSync(path.join(dir, 'build'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'build', `${name}.json`), JSON.stringify(out, null, 2) + '\n');
  console.log(`${name}.tolk compiled with Tolk ${out.tolkVersion}: code hash ${out.codeHashHex}`);
}

async function main() {
  for (const name of CONTRACTS) await compile(__dirname, name);
}

main().catch((e) => { console.error(e); process.exit(1); });
