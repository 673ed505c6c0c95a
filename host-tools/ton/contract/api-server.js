// A loopback TON HTTP API (the subset `chrysalis ton` uses) backed by the
// sandbox, so the CLI runs end to end over HTTP in tests.
//
//   node api-server.js            listens on 127.0.0.1:<random>, prints
//                                 {"ok":true,"listening":"127.0.0.1:PORT"}
//
// then takes the harness's JSON-line commands on stdin (init, fund,
// deploy_registry, set_now, ...) plus `fail_next {status, count, path?}` (answer
// the next `count` HTTP requests, to `path` if given, with `status`, e.g. 429)
// and `drop_sends {count}` (accept the next sends but never execute them). It exits when stdin
// closes or after 120 s, whichever comes first.
//
// HTTP routes (toncenter shapes):
//   POST /api/v2/sendBoc {boc}            -> {ok:true,result:{"@type":"ok"}}
//   POST /api/v3/message {boc}            -> {message_hash, message_hash_norm}
//   GET  /api/v2/getAddressInformation?address=
//   POST /api/v2/runGetMethod {address, method, stack:[["num","0x.."]]}
//   GET  /api/v3/transactionsByMessage?msg_hash=HEX&direction=in
//   GET  /api/v3/adjacentTransactions?hash=HEX&direction=out
'use strict';
const http = require('http');
const { beginCell, storeMessage } = require('@ton/core');
const { makeHandler, serveStdin } = require('./commands');

const LIFETIME_MS = 120000;
const MAX_BODY = 1 << 20;
const state = { chain: null, failNext: [], dropSends: 0, requests: [] };
state.extra = {
  fail_next: (req) => {
    for (let i = 0; i < (req.count || 1); i++) state.failNext.push({ status: req.status, path: req.path || null });
    return {};
  },
  requests: () => ({ requests: state.requests }),
  drop_sends: (req) => { state.dropSends += req.count || 1; return {}; },
};
const handle = makeHandler(state);

function send(res, status, obj) {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(obj));
}

function txJson(t) {
  const s = t.summary;
  return {
    hash: t.raw.hash().toString('hex'),
    account: s.address,
    lt: s.lt,
    now: s.now,
    in_msg: { hash: s.in_hash },
    description: { aborted: s.aborted, compute_ph: { skipped: s.compute_skipped, exit_code: s.exit_code, success: s.success } },
  };
}

function stackOut(items) {
  return items.map((i) => {
    switch (i.type) {
      case 'int': {
        const v = BigInt(i.value);
        return ['num', v < 0n ? '-0x' + (-v).toString(16) : '0x' + v.toString(16)];
      }
      case 'cell': return ['cell', { bytes: i.boc }];
      case 'slice': return ['slice', { bytes: i.boc }];
      case 'null': return ['null'];
      default: return [i.type];
    }
  });
}

async function route(req, url, body) {
  const chain = state.chain;
  if (!chain) return [503, { ok: false, error: 'chain not initialised' }];
  const p = url.pathname;
  if (req.method === 'POST' && (p === '/api/v2/sendBoc' || p === '/api/v3/message')) {
    if (state.dropSends > 0) {
      // Accepted by the API but lost before any validator: never executes.
      state.dropSends -= 1;
      return p === '/api/v2/sendBoc' ? [200, { ok: true, result: { '@type': 'ok' } }] : [200, { message_hash: 'lost' }];
    }
    const r = await chain.sendExternal(body.boc);
    if (!r.accepted) {
      return [500, { ok: false, code: 500, error: `LITE_SERVER_UNKNOWN: cannot apply external message to current state: ${r.error} (exit code ${r.exit_code})` }];
    }
    if (p === '/api/v2/sendBoc') return [200, { ok: true, result: { '@type': 'ok' } }];
    return [200, { message_hash: r.hash, message_hash_norm: r.hash }];
  }
  if (req.method === 'GET' && p === '/api/v2/getAddressInformation') {
    const a = await chain.account(url.searchParams.get('address'));
    const st = a.state === 'active' ? 'active' : a.state === 'frozen' ? 'frozen' : 'uninitialized';
    return [200, { ok: true, result: { balance: a.balance, state: st } }];
  }
  if (req.method === 'POST' && p === '/api/v2/runGetMethod') {
    const args = (body.stack || []).map(([t, v]) => {
      if (t !== 'num') throw new Error(`unsupported stack arg ${t}`);
      return { type: 'int', value: BigInt(v).toString() };
    });
    const acc = await chain.account(body.address);
    if (acc.state !== 'active') return [200, { ok: true, result: { exit_code: -13, stack: [] } }];
    const r = await chain.get(body.address, body.method, args);
    return [200, { ok: true, result: { exit_code: r.exit_code, stack: stackOut(r.stack) } }];
  }
  if (req.method === 'GET' && p === '/api/v3/transactionsByMessage') {
    const h = (url.searchParams.get('msg_hash') || '').toLowerCase();
    const txs = chain.transactions.filter((t) => t.summary.in_hash === h).map(txJson);
    return [200, { transactions: txs }];
  }
  if (req.method === 'GET' && p === '/api/v3/adjacentTransactions') {
    const h = (url.searchParams.get('hash') || '').toLowerCase();
    const parent = chain.transactions.find((t) => t.raw.hash().toString('hex') === h);
    if (!parent) return [200, { transactions: [] }];
    const outHashes = new Set();
    for (const m of parent.raw.outMessages.values()) {
      outHashes.add(beginCell().store(storeMessage(m)).endCell().hash().toString('hex'));
    }
    const txs = chain.transactions.filter((t) => outHashes.has(t.summary.in_hash)).map(txJson);
    return [200, { transactions: txs }];
  }
  return [404, { ok: false, error: `no route ${req.method} ${p}`, code: 404 }];
}

const server = http.createServer((req, res) => {
  const chunks = [];
  let size = 0;
  req.on('data', (c) => { size += c.length; if (size <= MAX_BODY) chunks.push(c); });
  req.on('end', async () => {
    const url = new URL(req.url, 'http://127.0.0.1');
    state.requests.push({ method: req.method, path: url.pathname, api_key: req.headers['x-api-key'] || null });
    const inject = state.failNext.findIndex((f) => f.path === null || f.path === url.pathname);
    if (inject >= 0) {
      const { status } = state.failNext.splice(inject, 1)[0];
      return send(res, status, { ok: false, error: `injected HTTP ${status}`, code: status });
    }
    if (size > MAX_BODY) return send(res, 413, { ok: false, error: 'body too large' });
    try {
      const body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf-8')) : {};
      const [status, obj] = await route(req, url, body);
      send(res, status, obj);
    } catch (e) {
      send(res, 400, { ok: false, error: String(e && e.message ? e.message : e), code: 400 });
    }
  });
});

server.listen(0, '127.0.0.1', () => {
  const a = server.address();
  process.stdout.write(JSON.stringify({ ok: true, listening: `${a.address}:${a.port}` }) + '\n');
  serveStdin(handle, () => { server.close(); process.exit(0); });
});
setTimeout(() => process.exit(0), LIFETIME_MS).unref();
