//! Operator wallets: key files, mnemonics, and signed wallet v4r2 / v5r1
//! external messages (all signing and wallet layouts from `tonlib-core`).
//!
//! A key file holds the 24-word mnemonic in JSON. It is created with mode
//! 0600 and refused when its mode lets the group or others read it. Nothing
//! in this module prints or formats the mnemonic or the secret key.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use num_bigint::BigUint;
use rand_core::{OsRng, RngCore};
use tonlib_core::cell::{Cell, CellBuilder};
use tonlib_core::tlb_types::block::coins::{CurrencyCollection, Grams};
use tonlib_core::tlb_types::block::message::{CommonMsgInfo, IntMsgInfo, Message};
use tonlib_core::tlb_types::block::msg_address::MsgAddress;
use tonlib_core::tlb_types::block::state_init::StateInit;
use tonlib_core::tlb_types::tlb::TLB;
use tonlib_core::wallet::mnemonic::{KeyPair, Mnemonic, WORDLIST_EN_SET};
use tonlib_core::wallet::ton_wallet::TonWallet;
use tonlib_core::wallet::wallet_version::WalletVersion;
use tonlib_core::TonAddress;

use crate::{Error, Result};

/// Key file format tag.
pub const KEY_FILE_FORMAT: &str = "chrysalis-ton-key/1";

/// Wallet contract versions an operator can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WalletKind {
    /// Wallet v4r2 (subwallet id 698983191).
    #[serde(rename = "v4r2")]
    V4R2,
    /// Wallet v5r1 (mainnet wallet id).
    #[serde(rename = "v5r1")]
    V5R1,
}

impl WalletKind {
    fn version(self) -> WalletVersion {
        match self {
            WalletKind::V4R2 => WalletVersion::V4R2,
            WalletKind::V5R1 => WalletVersion::V5R1,
        }
    }
    /// "v4r2" / "v5r1".
    pub fn as_str(self) -> &'static str {
        match self {
            WalletKind::V4R2 => "v4r2",
            WalletKind::V5R1 => "v5r1",
        }
    }
}

impl std::str::FromStr for WalletKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "v4r2" => Ok(WalletKind::V4R2),
            "v5r1" => Ok(WalletKind::V5R1),
            other => Err(Error::Invalid {
                field: "wallet version",
                detail: format!("{other:?}: expected v4r2 or v5r1"),
            }),
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFileJson {
    format: String,
    wallet: WalletKind,
    mnemonic: String,
}

/// A 24-word TON mnemonic (no password). Its `Debug` is redacted.
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Secret {
    /// Checks a mnemonic with tonlib-core's TON rules (24 known words, the
    /// passwordless seed check).
    pub fn from_words(words: &str) -> Result<Self> {
        let normalized = words.split_whitespace().collect::<Vec<_>>().join(" ");
        Mnemonic::from_str(&normalized, &None).map_err(|e| Error::Mnemonic(e.to_string()))?;
        Ok(Secret(normalized))
    }

    /// A fresh random mnemonic: random words from the TON word list until
    /// one passes the TON seed check (as TON wallets generate them).
    pub fn generate() -> Result<Self> {
        let mut words: Vec<&str> = vec![""; WORDLIST_EN_SET.len()];
        for (w, i) in WORDLIST_EN_SET.iter() {
            words[*i] = w;
        }
        if words.len() != 2048 {
            return Err(Error::Mnemonic("word list is not 2048 words".into()));
        }
        // Each try passes with probability ~1/256; 100k tries fail with
        // probability below 1e-170.
        for _ in 0..100_000 {
            let pick: Vec<&str> = (0..24)
                .map(|_| words[(OsRng.next_u32() % 2048) as usize])
                .collect();
            let phrase = pick.join(" ");
            if Mnemonic::from_str(&phrase, &None).is_ok() {
                return Ok(Secret(phrase));
            }
        }
        Err(Error::Mnemonic("no valid mnemonic found".into()))
    }

    fn key_pair(&self) -> Result<KeyPair> {
        Mnemonic::from_str(&self.0, &None)
            .and_then(|m| m.to_key_pair())
            .map_err(|e| Error::Mnemonic(e.to_string()))
    }
}

/// An operator wallet: key pair and wallet contract.
pub struct OperatorWallet {
    kind: WalletKind,
    wallet: TonWallet,
}

impl std::fmt::Debug for OperatorWallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorWallet")
            .field("kind", &self.kind)
            .field("address", &self.address().to_base64_url())
            .finish_non_exhaustive()
    }
}

/// One outgoing internal message of a wallet transfer.
#[derive(Debug, Clone)]
pub struct Transfer {
    /// Destination.
    pub to: TonAddress,
    /// Nanotons attached.
    pub value: u64,
    /// Bounce back on failure (true for contracts).
    pub bounce: bool,
    /// Message body.
    pub body: Cell,
    /// Code and data to deploy at `to` (the address must be theirs).
    pub state_init: Option<(Cell, Cell)>,
}

impl Transfer {
    /// The internal message cell, built field by field (`ihr_disabled`,
    /// no source, zero fees and times: the wallet fills those).
    pub fn to_cell(&self) -> Result<Cell> {
        let info = CommonMsgInfo::Int(IntMsgInfo {
            ihr_disabled: true,
            bounce: self.bounce,
            bounced: false,
            src: MsgAddress::NONE,
            dest: self.to.to_msg_address(),
            value: CurrencyCollection::new(BigUint::from(self.value)),
            ihr_fee: Grams::new(BigUint::from(0u32)),
            fwd_fee: Grams::new(BigUint::from(0u32)),
            created_lt: 0,
            created_at: 0,
        });
        let mut msg = Message::new(info, Arc::new(self.body.clone()));
        if let Some((code, data)) = &self.state_init {
            msg.with_state_init(StateInit::new(
                Arc::new(code.clone()),
                Arc::new(data.clone()),
            ));
        }
        Ok(msg.to_cell()?)
    }
}

/// A signed external message and what identifies it.
#[derive(Debug, Clone)]
pub struct SignedExternal {
    /// The external message cell.
    pub cell: Cell,
    /// Seqno it was signed for.
    pub seqno: u32,
    /// Expiry (unix seconds).
    pub valid_until: u32,
}

impl SignedExternal {
    /// Standard base64 BOC (with CRC32C), as the HTTP API takes it.
    pub fn boc_base64(&self) -> Result<String> {
        Ok(self.cell.to_boc_b64(true)?)
    }
    /// Hex of the message cell's representation hash.
    pub fn hash_hex(&self) -> String {
        hex::encode(self.cell.cell_hash().as_slice())
    }
}

impl OperatorWallet {
    /// A wallet of `kind` for `secret`.
    pub fn new(kind: WalletKind, secret: &Secret) -> Result<Self> {
        let wallet = TonWallet::new(kind.version(), secret.key_pair()?)?;
        Ok(OperatorWallet { kind, wallet })
    }

    /// The wallet version.
    pub fn kind(&self) -> WalletKind {
        self.kind
    }

    /// The wallet address.
    pub fn address(&self) -> &TonAddress {
        &self.wallet.address
    }

    /// The Ed25519 public key (32 bytes).
    pub fn public_key(&self) -> &[u8] {
        &self.wallet.key_pair.public_key
    }

    /// Signs one transfer. Deterministic: the same `seqno`, `valid_until`
    /// and transfer always give the same message, so a retry resends it
    /// rather than making a second one. Seqno 0 includes the StateInit.
    pub fn sign(&self, t: &Transfer, seqno: u32, valid_until: u32) -> Result<SignedExternal> {
        let internal = Arc::new(t.to_cell()?);
        let cell = self
            .wallet
            .create_external_msg(valid_until, seqno, seqno == 0, [internal])
            .map_err(|e| Error::Message(e.to_string()))?;
        Ok(SignedExternal {
            cell,
            seqno,
            valid_until,
        })
    }
}

/// A key file: wallet version and mnemonic.
pub struct KeyFile {
    /// Wallet version.
    pub kind: WalletKind,
    /// The mnemonic.
    pub secret: Secret,
}

fn key_err(path: &Path, detail: impl Into<String>) -> Error {
    Error::KeyFile {
        path: path.display().to_string(),
        detail: detail.into(),
    }
}

impl KeyFile {
    /// Writes a new key file with mode 0600; refuses to overwrite.
    pub fn create(&self, path: &Path) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let json = serde_json::to_string_pretty(&KeyFileJson {
            format: KEY_FILE_FORMAT.into(),
            wallet: self.kind,
            mnemonic: self.secret.0.clone(),
        })
        .map_err(|e| key_err(path, e.to_string()))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    key_err(path, "already exists; refusing to overwrite a key")
                } else {
                    Error::Io {
                        path: path.display().to_string(),
                        source: e,
                    }
                }
            })?;
        let written = f
            .write_all(json.as_bytes())
            .and_then(|_| f.write_all(b"\n"))
            .and_then(|_| f.sync_all());
        if let Err(e) = written {
            drop(f);
            let _ = std::fs::remove_file(path);
            return Err(Error::Io {
                path: path.display().to_string(),
                source: e,
            });
        }
        Ok(())
    }

    /// Reads a key file; refuses one that the group or others can read or
    /// write, and any unknown field.
    pub fn load(path: &Path) -> Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let io = |e| Error::Io {
            path: path.display().to_string(),
            source: e,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(key_err(
                path,
                format!("mode {mode:04o} lets others read it; run chmod 600 on it"),
            ));
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        // The parser's messages never quote the mnemonic: report only where.
        let j: KeyFileJson = serde_json::from_str(&text).map_err(|e| {
            key_err(
                path,
                format!(
                    "not a {KEY_FILE_FORMAT} file (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            )
        })?;
        if j.format != KEY_FILE_FORMAT {
            return Err(key_err(
                path,
                format!("format {:?}, expected {KEY_FILE_FORMAT}", j.format),
            ));
        }
        let secret = Secret::from_words(&j.mnemonic)
            .map_err(|_| key_err(path, "the mnemonic is not a valid 24-word TON mnemonic"))?;
        Ok(KeyFile {
            kind: j.wallet,
            secret,
        })
    }

    /// The wallet for this key.
    pub fn wallet(&self) -> Result<OperatorWallet> {
        OperatorWallet::new(self.kind, &self.secret)
    }
}

/// An empty cell (for plain transfers).
pub fn empty_body() -> Result<Cell> {
    Ok(CellBuilder::new().build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_roundtrip_and_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.json");
        let kf = KeyFile {
            kind: WalletKind::V4R2,
            secret: Secret::generate().unwrap(),
        };
        kf.create(&p).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = KeyFile::load(&p).unwrap();
        assert_eq!(
            back.wallet().unwrap().address(),
            kf.wallet().unwrap().address()
        );
        // Refuses to overwrite.
        assert!(matches!(kf.create(&p), Err(Error::KeyFile { .. })));
        // Refuses a group-readable file, and the error does not leak words.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = KeyFile::load(&p).err().unwrap().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        let first_word = kf.secret.0.split(' ').next().unwrap().to_string();
        assert!(!err.contains(&format!(" {first_word} ")));
        assert_eq!(format!("{:?}", kf.secret), "Secret(***)");
    }

    #[test]
    fn signing_is_deterministic() {
        let s = Secret::generate().unwrap();
        let w = OperatorWallet::new(WalletKind::V5R1, &s).unwrap();
        let t = Transfer {
            to: w.address().clone(),
            value: 1,
            bounce: false,
            body: empty_body().unwrap(),
            state_init: None,
        };
        let a = w.sign(&t, 3, 1_900_000_000).unwrap();
        let b = w.sign(&t, 3, 1_900_000_000).unwrap();
        assert_eq!(a.hash_hex(), b.hash_hex());
        let c = w.sign(&t, 4, 1_900_000_000).unwrap();
        assert_ne!(a.hash_hex(), c.hash_hex());
    }
}
