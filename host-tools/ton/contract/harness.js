// JSON-lines driver of the sandbox for Rust tests: one request object per
// line on stdin, one response per line on stdout ({"ok":true,...} or
// {"ok":false,"error":"..."}). Requests (field "cmd"):
//   init {now}                         start a fresh chain at unix time `now`
//   set_now {now}                      move the chain's clock
//   fund {address, amount}             non-bounceable nanotons from a treasury
//   deploy_registry {admin, min_stake, unstake_delay} -> {address}
//   send_external {boc}                -> {accepted, txs | exit_code, error}
//   get {address, method, args}        -> {exit_code, stack}
//   account {address}                  -> {balance, state}
//   ref_wallet_external {...}          the same transfer built by @ton/ton (hash)
//   ref_register_body {...}            the same Register body built by @ton/core (hash)
'use strict';
const readline = require('readline');
const { Chain } = require('./chain');
const ref = require('./reference');

let chain = null;

async function handle(req) {
  switch (req.cmd) {
    case 'init': chain = await Chain.create(req.now); return {};
    case 'set_now': chain.bc.now = req.now; return {};
    case 'fund': return { txs: await chain.fund(req.address, req.amount) };
    case 'deploy_registry': {
      const r = await chain.deployRegistry(req.admin, req.min_stake, req.unstake_delay);
      return { address: r.address, txs: r.txs };
    }
    case 'send_external': return await chain.sendExternal(req.boc);
    case 'get': return await chain.get(req.address, req.method, req.args);
    case 'account': return await chain.account(req.address);
    case 'ref_wallet_external': return await ref.walletExternal(req);
    case 'ref_register_body': return ref.registerBody(req);
    default: throw new Error(`unknown cmd ${req.cmd}`);
  }
}

const rl = readline.createInterface({ input: process.stdin, terminal: false });
let queue = Promise.resolve();
rl.on('line', (line) => {
  queue = queue.then(async () => {
    let resp;
    try {
      const req = JSON.parse(line);
      if (req.cmd !== 'init' && !chain && !req.cmd.startsWith('ref_')) throw new Error('send init first');
      resp = { ok: true, ...(await handle(req)) };
    } catch (e) {
      resp = { ok: false, error: String(e && e.message ? e.message : e) };
    }
    process.stdout.write(JSON.stringify(resp) + '\n');
  });
});
rl.on('close', () => { queue.then(() => process.exit(0)); });
