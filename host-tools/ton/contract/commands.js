// The JSON-line control commands shared by harness.js and api-server.js.
'use strict';
const { Chain } = require('./chain');
const ref = require('./reference');

function makeHandler(state) {
  return async function handle(req) {
    if (req.cmd === 'init') { state.chain = await Chain.create(req.now); return {}; }
    if (req.cmd === 'ref_wallet_external') return await ref.walletExternal(req);
    if (req.cmd === 'ref_register_body') return ref.registerBody(req);
    const chain = state.chain;
    if (!chain) throw new Error('send init first');
    switch (req.cmd) {
      case 'set_now': chain.bc.now = req.now; return {};
      case 'fund': return { txs: await chain.fund(req.address, req.amount) };
      case 'deploy_registry': {
        const r = await chain.deployRegistry(req.admin, req.min_stake, req.unstake_delay);
        return { address: r.address, txs: r.txs };
      }
      case 'send_external': return await chain.sendExternal(req.boc);
      case 'get': return await chain.get(req.address, req.method, req.args);
      case 'account': return await chain.account(req.address);
      case 'transactions': return { txs: chain.transactions.map((t) => t.summary) };
      default:
        if (state.extra && state.extra[req.cmd]) return state.extra[req.cmd](req);
        throw new Error(`unknown cmd ${req.cmd}`);
    }
  };
}

/** Reads JSON lines from stdin, answers each on stdout, in order. */
function serveStdin(handle, onClose) {
  const readline = require('readline');
  const rl = readline.createInterface({ input: process.stdin, terminal: false });
  let queue = Promise.resolve();
  rl.on('line', (line) => {
    queue = queue.then(async () => {
      let resp;
      try {
        resp = { ok: true, ...(await handle(JSON.parse(line))) };
      } catch (e) {
        resp = { ok: false, error: String(e && e.message ? e.message : e) };
      }
      process.stdout.write(JSON.stringify(resp) + '\n');
    });
  });
  rl.on('close', () => { queue.then(onClose); });
}

module.exports = { makeHandler, serveStdin };
