//! The window's hash tree (format `chrysalis-fresh-batch-v1`): leaves,
//! nodes, inclusion proofs.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The answer format named in every batched answer.
pub const FORMAT: &str = "chrysalis-fresh-batch-v1";

/// A hash of the tree.
pub type Hash = [u8; 32];

fn h(parts: &[&[u8]]) -> Hash {
    let mut d = Sha256::new();
    for p in parts {
        d.update(p);
    }
    d.finalize().into()
}

/// The leaf of a client nonce.
pub fn nonce_leaf(nonce: &[u8]) -> Hash {
    h(&[&[0x00], nonce])
}

/// The header leaf (leaf 0) of window `sequence`.
pub fn header_leaf(sequence: u64, previous_root: &Hash) -> Hash {
    h(&[
        &[0x02],
        FORMAT.as_bytes(),
        &sequence.to_be_bytes(),
        previous_root,
    ])
}

fn node(left: &Hash, right: &Hash) -> Hash {
    h(&[&[0x01], left, right])
}

/// Every level of the tree over `leaves` (at least one), leaves first,
/// the root alone last.
pub fn levels(leaves: Vec<Hash>) -> Vec<Vec<Hash>> {
    let mut all = vec![leaves];
    while all.last().map_or(0, Vec::len) > 1 {
        let below = all.last().expect("non-empty");
        let up = below
            .chunks(2)
            .map(|p| match p {
                [l, r] => node(l, r),
                [one] => *one,
                _ => unreachable!("chunks of two"),
            })
            .collect();
        all.push(up);
    }
    all
}

/// Which side a proof step's hash goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// `H(0x01 ‖ hash ‖ running)`.
    Left,
    /// `H(0x01 ‖ running ‖ hash)`.
    Right,
}

/// One step of an inclusion proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofStep {
    /// Where the sibling goes.
    pub side: Side,
    /// The sibling, hex in JSON.
    #[serde(with = "hex::serde")]
    pub hash: Hash,
}

/// The inclusion proof of leaf `index` (sibling hashes from the leaf up).
pub fn proof(levels: &[Vec<Hash>], mut index: usize) -> Vec<ProofStep> {
    let mut out = Vec::new();
    for level in &levels[..levels.len() - 1] {
        let sibling = index ^ 1;
        if sibling < level.len() {
            out.push(ProofStep {
                side: if sibling < index {
                    Side::Left
                } else {
                    Side::Right
                },
                hash: level[sibling],
            });
        }
        index /= 2;
    }
    out
}

/// The root that `nonce` and `proof` lead to.
pub fn root_from_proof(nonce: &[u8], proof: &[ProofStep]) -> Hash {
    proof.iter().fold(nonce_leaf(nonce), |acc, s| match s.side {
        Side::Left => node(&s.hash, &acc),
        Side::Right => node(&acc, &s.hash),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_leaf_proves_into_the_root() {
        for n in 1..=17usize {
            let nonces: Vec<Vec<u8>> = (0..n).map(|i| vec![i as u8; 1 + i % 5]).collect();
            let mut leaves = vec![header_leaf(7, &[9; 32])];
            leaves.extend(nonces.iter().map(|x| nonce_leaf(x)));
            let lv = levels(leaves);
            let root = lv.last().unwrap()[0];
            for (i, x) in nonces.iter().enumerate() {
                let p = proof(&lv, i + 1);
                assert_eq!(root_from_proof(x, &p), root, "n={n} i={i}");
                assert!(p.len() <= 5);
                // Another nonce does not prove with this proof.
                assert_ne!(root_from_proof(b"other", &p), root);
            }
        }
    }

    #[test]
    fn domain_separation() {
        // A nonce that looks like an inner node is not one.
        let a = nonce_leaf(b"a");
        let b = nonce_leaf(b"b");
        let inner = node(&a, &b);
        let mut fake = vec![0x01];
        fake.extend_from_slice(&a);
        fake.extend_from_slice(&b);
        assert_ne!(nonce_leaf(&fake[1..]), inner);
        assert_ne!(header_leaf(1, &[0; 32]), header_leaf(2, &[0; 32]));
        assert_ne!(header_leaf(1, &[0; 32]), header_leaf(1, &[1; 32]));
    }
}
