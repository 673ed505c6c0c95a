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
//   transactions {}                    -> every transaction so far
//   ref_wallet_external {...}          the same transfer built by @ton/ton (hash)
//   ref_register_body {...}            the same Register body built by @ton/core (hash)
'use strict';
const { makeHandler, serveStdin } = require('./commands');

serveStdin(makeHandler({ chain: null }), () => process.exit(0));
