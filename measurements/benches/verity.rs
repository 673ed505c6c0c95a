//! dm-verity root hash throughput on a 64 MiB image (page-cached), next to a
//! plain streaming SHA-256 of the same file in this process. The 1 GiB
//! comparison with `veritysetup` and `sha256sum` is
//! `verity_vs_veritysetup.sh`.

use std::hint::black_box;
use std::io::Read;

use chrysalis_measurements::verity::{verity_root_hash, VerityParams};
use criterion::{criterion_group, Criterion, Throughput};
use sha2::{Digest, Sha256};

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("img");
    let mut data = vec![0u8; 64 << 20];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    std::fs::write(&img, &data).unwrap();
    drop(data);
    let params = VerityParams::default().with_salt_hex("00").unwrap();

    let mut g = c.benchmark_group("verity");
    g.throughput(Throughput::Bytes(64 << 20));
    g.sample_size(20);
    g.bench_function("root hash, 64 MiB, sha256 4K/4K", |b| {
        b.iter(|| verity_root_hash(black_box(&img), &params).unwrap())
    });
    g.bench_function("plain sha256 of the file, one thread", |b| {
        b.iter(|| {
            let mut f = std::fs::File::open(&img).unwrap();
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = f.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            h.finalize()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
