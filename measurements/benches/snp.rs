//! SEV-SNP launch digest speed (the Rust side; `snp_vs_sev_snp_measure.sh`
//! times `sev-snp-measure` on the same inputs and prints the ratio).
//!
//! Inputs: the virtee AmdSev firmware tail from ../shared/vectors alone
//! (4 KiB), and behind a pseudo-random body to a realistic 4 MiB; a 12 MiB
//! kernel and 40 MiB initrd of pseudo-random bytes; Debian's real OVMF.fd when
//! the `ovmf` package is installed. Skipped with a message when
//! the vectors are absent (`CHRYSALIS_VECTORS=DIR` overrides their place).

use std::hint::black_box;
use std::path::PathBuf;

use chrysalis_measurements::snp::{
    snp_launch_digest, snp_ovmf_hash, Artifact, SnpMeasureInput, VcpuType,
};
use criterion::{criterion_group, Criterion};

fn pseudo_random(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        out.extend_from_slice(&seed.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn bench(c: &mut Criterion) {
    let tail = std::env::var_os("CHRYSALIS_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors"))
        .join("measurements/virtee_ovmf_AmdSev_suffix.bin");
    let Ok(tail_bytes) = std::fs::read(&tail) else {
        eprintln!("skipping: ../shared/vectors not found");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut fw = pseudo_random((4 << 20) - tail_bytes.len(), 1);
    fw.extend_from_slice(&tail_bytes);
    let fw4m = tmp.path().join("ovmf-4m.fd");
    std::fs::write(&fw4m, fw).unwrap();
    let kernel = tmp.path().join("vmlinuz");
    std::fs::write(&kernel, pseudo_random(12 << 20, 2)).unwrap();
    let initrd = tmp.path().join("initrd");
    std::fs::write(&initrd, pseudo_random(40 << 20, 3)).unwrap();

    let mut g = c.benchmark_group("snp");
    let mut small = SnpMeasureInput::new(Artifact::File(tail.clone()));
    small.vcpus = 4;
    small.vcpu_type = VcpuType::EpycMilan;
    g.bench_function("4 KiB firmware, 4 vCPUs", |b| {
        b.iter(|| snp_launch_digest(black_box(&small)).unwrap())
    });

    let mut big = small.clone();
    big.firmware = Artifact::File(fw4m.clone());
    g.bench_function("4 MiB firmware, 4 vCPUs", |b| {
        b.iter(|| snp_launch_digest(black_box(&big)).unwrap())
    });

    let debian = PathBuf::from("/usr/share/ovmf/OVMF.fd");
    if debian.exists() {
        let mut real = small.clone();
        real.firmware = Artifact::File(debian);
        g.bench_function("Debian OVMF.fd (2 MiB), 4 vCPUs", |b| {
            b.iter(|| snp_launch_digest(black_box(&real)).unwrap())
        });
    }

    let mut cached = big.clone();
    cached.ovmf_hash = Some(snp_ovmf_hash(&cached.firmware).unwrap());
    g.bench_function("4 MiB firmware with ovmf_hash given, 4 vCPUs", |b| {
        b.iter(|| snp_launch_digest(black_box(&cached)).unwrap())
    });

    let mut full = big.clone();
    full.kernel = Some(Artifact::File(kernel));
    full.initrd = Some(Artifact::File(initrd));
    full.cmdline = Some("console=ttyS0 root=/dev/vda1 ro".into());
    full.vcpus = 64;
    full.vcpu_type = VcpuType::EpycGenoa;
    g.sample_size(20);
    g.bench_function(
        "4 MiB firmware + 12 MiB kernel + 40 MiB initrd, 64 vCPUs",
        |b| b.iter(|| snp_launch_digest(black_box(&full)).unwrap()),
    );
    g.finish();
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
