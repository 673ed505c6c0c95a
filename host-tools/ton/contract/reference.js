// Independent builds of the messages Rust makes, with @ton/core / @ton/ton,
// so tests compare cell hashes of the two implementations.
'use strict';
const { Address, Cell, beginCell, external, storeMessage, internal, SendMode } = require('@ton/core');
const { WalletContractV4, WalletContractV5R1 } = require('@ton/ton');
const { mnemonicToPrivateKey } = require('@ton/crypto');

function wallet(version, publicKey) {
  if (version === 'v4r2') return WalletContractV4.create({ workchain: 0, publicKey });
  if (version === 'v5r1') return WalletContractV5R1.create({ workchain: 0, publicKey });
  throw new Error(`unknown wallet version ${version}`);
}

/** {version, mnemonic (24 words), seqno, valid_until, to, value, bounce, body (boc b64)} */
async function walletExternal(req) {
  const kp = await mnemonicToPrivateKey(req.mnemonic.trim().split(/\s+/));
  const w = wallet(req.version, kp.publicKey);
  const msg = internal({
    to: Address.parse(req.to),
    value: BigInt(req.value),
    bounce: req.bounce,
    body: req.body ? Cell.fromBase64(req.body) : undefined,
  });
  const args = {
    seqno: req.seqno,
    secretKey: kp.secretKey,
    messages: [msg],
    sendMode: SendMode.PAY_GAS_SEPARATELY + SendMode.IGNORE_ERRORS,
    timeout: req.valid_until,
  };
  const body = w.createTransfer(args);
  const ext = external({ to: w.address, init: req.seqno === 0 ? w.init : undefined, body });
  const cell = beginCell().store(storeMessage(ext)).endCell();
  return { address: w.address.toString(), hash: cell.hash().toString('hex'), body_hash: body.hash().toString('hex') };
}

function textCell(s) {
  return beginCell().storeBuffer(Buffer.from(s, 'hex')).endCell();
}

/** {query_id, measurement (hex 32), public_key (hex), endpoint, model (utf8), price, stake} */
function registerBody(req) {
  const c = beginCell()
    .storeUint(0xc4a50010, 32)
    .storeUint(BigInt(req.query_id), 64)
    .storeUint(BigInt('0x' + req.measurement), 256)
    .storeRef(textCell(req.public_key))
    .storeRef(beginCell().storeBuffer(Buffer.from(req.endpoint, 'utf-8')).endCell())
    .storeRef(beginCell().storeBuffer(Buffer.from(req.model, 'utf-8')).endCell())
    .storeCoins(BigInt(req.price))
    .storeCoins(BigInt(req.stake))
    .endCell();
  return { hash: c.hash().toString('hex') };
}

module.exports = { walletExternal, registerBody };
