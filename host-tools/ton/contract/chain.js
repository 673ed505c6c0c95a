// A sandboxed TON chain holding the registry: shared by harness.js (JSON
// lines for Rust tests) and api-server.js (a loopback TON HTTP API).
'use strict';
const fs = require('fs');
const path = require('path');
const { Blockchain } = require('@ton/sandbox');
const {
  Address, Cell, beginCell, contractAddress, toNano, storeMessage, external, internal,
  Dictionary, TupleBuilder,
} = require('@ton/core');

/** Code of the compiled registry (run `node compile.js` first). */
function registryCode() {
  const file = path.join(__dirname, 'build', 'registry.json');
  const j = JSON.parse(fs.readFileSync(file, 'utf-8'));
  return Cell.fromBase64(j.codeBoc64);
}

/**
 * Initial registry data, TL-B `Storage` in the README:
 * admin:MsgAddressInt min_stake:Coins unstake_delay:uint32 machine_count:uint32
 * measurements:(HashmapE 256 AllowedMeasurement) machines:(HashmapE 256 ^Machine)
 */
function registryData(admin, minStake, unstakeDelay) {
  return beginCell()
    .storeAddress(admin)
    .storeCoins(minStake)
    .storeUint(unstakeDelay, 32)
    .storeUint(0, 32)
    .storeMaybeRef(null)
    .storeMaybeRef(null)
    .endCell();
}

function txSummary(tx) {
  const d = tx.description;
  const compute = d.computePhase;
  const inMsg = tx.inMessage;
  const out = [];
  for (const m of tx.outMessages.values()) {
    out.push({
      to: m.info.dest ? m.info.dest.toString() : null,
      value: m.info.type === 'internal' ? m.info.value.coins.toString() : '0',
      bounce: m.info.type === 'internal' ? m.info.bounce : false,
      bounced: m.info.type === 'internal' ? m.info.bounced : false,
      op: m.body.bits.length >= 32 ? m.body.beginParse().preloadUint(32) : null,
    });
  }
  return {
    address: tx.inMessage && tx.inMessage.info.dest ? tx.inMessage.info.dest.toString() : null,
    in_type: inMsg ? inMsg.info.type : null,
    in_bounced: inMsg && inMsg.info.type === 'internal' ? inMsg.info.bounced : false,
    in_value: inMsg && inMsg.info.type === 'internal' ? inMsg.info.value.coins.toString() : '0',
    in_hash: inMsg ? beginCell().store(storeMessage(inMsg)).endCell().hash().toString('hex') : null,
    exit_code: compute.type === 'vm' ? compute.exitCode : null,
    gas_used: compute.type === 'vm' ? compute.gasUsed.toString() : '0',
    total_fees: tx.totalFees.coins.toString(),
    compute_skipped: compute.type !== 'vm',
    aborted: d.aborted === true,
    success: compute.type === 'vm' && compute.success && d.aborted !== true,
    lt: tx.lt.toString(),
    now: tx.now,
    out,
  };
}

/** Extracts the TVM exit code from a sandbox error for a refused external. */
function externalError(e) {
  const msg = String(e && e.message ? e.message : e);
  const m = /exit code (-?\d+)/i.exec(msg) || /exitCode[":\s]+(-?\d+)/.exec(msg);
  return { error: msg.split('\n')[0], exit_code: m ? Number(m[1]) : null };
}

class Chain {
  static async create(now) {
    const c = new Chain();
    c.bc = await Blockchain.create();
    c.bc.now = now || Math.floor(Date.now() / 1000);
    c.treasury = await c.bc.treasury('chrysalis-test-treasury', { balance: toNano('1000000') });
    c.transactions = []; // every transaction, oldest first
    return c;
  }

  record(txs) {
    const out = txs.map(txSummary);
    for (let i = 0; i < txs.length; i++) {
      this.transactions.push({ summary: out[i], raw: txs[i] });
    }
    return out;
  }

  /** Non-bounceable transfer from the test treasury (wallets start uninitialised). */
  async fund(addr, amount) {
    const r = await this.treasury.send({ to: Address.parse(addr), value: BigInt(amount), bounce: false });
    return this.record(r.transactions);
  }

  async deployRegistry(admin, minStake, unstakeDelay) {
    const code = registryCode();
    const data = registryData(Address.parse(admin), BigInt(minStake), unstakeDelay);
    const init = { code, data };
    const address = contractAddress(0, init);
    const r = await this.treasury.send({ to: address, value: toNano('1'), init, bounce: false });
    return { address: address.toString(), txs: this.record(r.transactions) };
  }

  /** Executes an external message BOC; a refused external has no transaction. */
  async sendExternal(bocB64) {
    const cell = Cell.fromBase64(bocB64);
    try {
      const r = await this.bc.sendMessage(cell);
      return { accepted: true, hash: cell.hash().toString('hex'), txs: this.record(r.transactions) };
    } catch (e) {
      return { accepted: false, hash: cell.hash().toString('hex'), ...externalError(e) };
    }
  }

  /** Runs a getter; stack items in: {type:"int",value:"dec"} | {type:"cell",boc}. */
  async get(addr, method, args) {
    const tb = new TupleBuilder();
    for (const a of args || []) {
      if (a.type === 'int') tb.writeNumber(BigInt(a.value));
      else if (a.type === 'cell') tb.writeCell(Cell.fromBase64(a.boc));
      else if (a.type === 'slice') tb.writeSlice(Cell.fromBase64(a.boc));
      else throw new Error(`unknown stack item type ${a.type}`);
    }
    const r = await this.bc.runGetMethod(Address.parse(addr), method, tb.build());
    return { exit_code: r.exitCode, stack: r.stack.map(stackItem) };
  }

  async account(addr) {
    const c = await this.bc.getContract(Address.parse(addr));
    return { balance: c.balance.toString(), state: c.accountState ? c.accountState.type : 'uninit' };
  }
}

function stackItem(i) {
  switch (i.type) {
    case 'int': return { type: 'int', value: i.value.toString() };
    case 'null': return { type: 'null' };
    case 'cell': return { type: 'cell', boc: i.cell.toBoc().toString('base64') };
    case 'slice': return { type: 'slice', boc: i.cell.toBoc().toString('base64') };
    case 'builder': return { type: 'builder', boc: i.cell.toBoc().toString('base64') };
    default: return { type: i.type };
  }
}

module.exports = { Chain, registryCode, registryData, txSummary };
