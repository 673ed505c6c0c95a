//! Prints the SEV-SNP launch digest (hex), with `sev-snp-measure`'s argument
//! names, for `benches/snp_vs_sev_snp_measure.sh`.
//!
//! ```text
//! cargo run --release -p chrysalis-measurements --example snp -- --ovmf FW
//!     [--kernel K] [--initrd I] [--append CMDLINE] [--vcpus N] [--vcpu-type T]
//!     [--guest-features HEX] [--vmm-type qemu|ec2|ec2-legacy|gce]
//!     [--snp-ovmf-hash HEX] [--repeat N]
//! ```
//! With `--repeat N` the digest is computed N times in this process and the
//! mean time per digest is printed to stderr as `per_digest_us=…`.

use std::path::PathBuf;
use std::time::Instant;

use chrysalis_measurements::snp::{
    parse_digest48, snp_launch_digest, Artifact, SnpMeasureInput, VcpuType,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut input = SnpMeasureInput::new(Artifact::File(PathBuf::new()));
    let mut have_fw = false;
    let mut repeat = 1u32;
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--ovmf" => {
                input.firmware = Artifact::File(val()?.into());
                have_fw = true;
            }
            "--kernel" => input.kernel = Some(Artifact::File(val()?.into())),
            "--initrd" => input.initrd = Some(Artifact::File(val()?.into())),
            "--append" => input.cmdline = Some(val()?),
            "--vcpus" => input.vcpus = val()?.parse()?,
            "--vcpu-type" => input.vcpu_type = val()?.parse::<VcpuType>()?,
            "--guest-features" => {
                let v = val()?;
                input.guest_features = u64::from_str_radix(v.trim_start_matches("0x"), 16)?;
            }
            "--vmm-type" => input.vmm = val()?.parse()?,
            "--snp-ovmf-hash" => input.ovmf_hash = Some(parse_digest48(&val()?)?),
            "--repeat" => repeat = val()?.parse()?,
            _ => return Err(format!("unexpected argument {a}").into()),
        }
    }
    if !have_fw {
        return Err("--ovmf FILE is required".into());
    }
    let start = Instant::now();
    let mut digest = snp_launch_digest(&input)?;
    for _ in 1..repeat {
        digest = snp_launch_digest(&input)?;
    }
    if repeat > 1 {
        let per = start.elapsed().as_secs_f64() / f64::from(repeat);
        eprintln!("per_digest_us={:.1}", per * 1e6);
    }
    println!("{}", hex::encode(digest));
    Ok(())
}
