// Compiles registry.tolk with the pinned @ton/tolk-js and writes
// build/registry.json ({ codeBoc64, codeHashHex, tolkVersion }).
'use strict';
const fs = require('fs');
const path = require('path');
const { runTolkCompiler, getTolkCompilerVersion } = require('@ton/tolk-js');

async function main() {
  const dir = __dirname;
  const result = await runTolkCompiler({
    entrypointFileName: 'registry.tolk',
    fsReadCallback: (p) => fs.readFileSync(path.join(dir, p), 'utf-8'),
  });
  if (result.status === 'error') {
    console.error(result.message);
    process.exit(1);
  }
  const out = {
    tolkVersion: await getTolkCompilerVersion(),
    codeBoc64: result.codeBoc64,
    codeHashHex: result.codeHashHex,
  };
  fs.mkdirSync(path.join(dir, 'build'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'build', 'registry.json'), JSON.stringify(out, null, 2) + '\n');
  console.log(`registry.tolk compiled with Tolk ${out.tolkVersion}: code hash ${out.codeHashHex}`);
}

main().catch((e) => { console.error(e); process.exit(1); });
