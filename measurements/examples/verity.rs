//! Prints the dm-verity root hash of an image, and this process's peak RSS, for
//! `benches/verity_vs_veritysetup.sh`.
//!
//! ```text
//! cargo run --release -p chrysalis-measurements --example verity -- IMAGE
//!     [--salt HEX] [--hash sha256|sha1|sha512] [--data-block-size N]
//!     [--hash-block-size N] [--tree OUT] [--uuid UUID]
//! ```
//! Output: `root_hash=HEX`, `data_blocks=N`, `seconds=S`, `peak_rss_kib=K`
//! (VmHWM from /proc/self/status), one per line.

use std::path::PathBuf;
use std::time::Instant;

use chrysalis_measurements::verity::{
    parse_uuid, verity_root_hash, write_hash_tree, HashTreeLayout, VerityParams,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut image = None;
    let mut params = VerityParams::default();
    let mut tree = None;
    let mut uuid = None;
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--salt" => params = params.with_salt_hex(&val()?)?,
            "--hash" => params.hash = val()?.parse()?,
            "--data-block-size" => params.data_block_size = val()?.parse()?,
            "--hash-block-size" => params.hash_block_size = val()?.parse()?,
            "--tree" => tree = Some(PathBuf::from(val()?)),
            "--uuid" => uuid = Some(parse_uuid(&val()?).ok_or("bad --uuid")?),
            _ if image.is_none() && !a.starts_with("--") => image = Some(PathBuf::from(a)),
            _ => return Err(format!("unexpected argument {a}").into()),
        }
    }
    let image = image.ok_or("usage: verity IMAGE [--salt HEX] [--tree OUT [--uuid UUID]] ...")?;
    let start = Instant::now();
    let r = match tree {
        None => verity_root_hash(&image, &params)?,
        Some(out) => {
            let layout = match uuid {
                Some(uuid) => HashTreeLayout::Superblock { uuid },
                None => HashTreeLayout::NoSuperblock,
            };
            write_hash_tree(&image, &params, &out, layout)?
        }
    };
    let secs = start.elapsed().as_secs_f64();
    println!("root_hash={}", hex::encode(&r.root_hash));
    println!("data_blocks={}", r.data_blocks);
    println!("seconds={secs:.3}");
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .map(|v| v.trim().trim_end_matches(" kB").to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("peak_rss_kib={hwm}");
    Ok(())
}
