//! Verification speed.
//!
//! * `tdx/dcap-qvl direct` vs `tdx/chrysalis verify`: full TDX verification of
//!   the same quote and collateral, in the same run. The goal is a ratio
//!   (dcap-qvl time / Chrysalis time) ≥ 0.95: Chrysalis's extra checks
//!   (anchor choice, freshness messages) must cost next to nothing.
//! * `tdx/cached re-verification`: an already verified quote served by the
//!   verification cache (goal ≤ 5 µs).
//!
//! Uses the real dcap-qvl vector from ../shared/vectors when present (at its
//! manifest time), else a simulated quote with its run-time root.

use std::hint::black_box;
use std::path::PathBuf;

use chrysalis_attestation as att;
use criterion::{criterion_group, Criterion};
use time::OffsetDateTime;

use att::cache::VerificationCache;
use att::tdx::{TdxCollateral, TdxRoots};

struct Case {
    label: &'static str,
    quote: Vec<u8>,
    collateral: TdxCollateral,
    roots: TdxRoots,
    root_der: Vec<u8>,
    now: OffsetDateTime,
}

fn case() -> Case {
    let vectors = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors/tdx");
    if let (Ok(q), Ok(c)) = (
        std::fs::read(vectors.join("dcapqvl_tdx_quote")),
        TdxCollateral::load(&vectors.join("dcapqvl_tdx_quote_collateral.json")),
    ) {
        let (_, used) = att::tdx::TdxQuote::parse_prefix(&q).expect("vector parses");
        return Case {
            label: "real quote (dcapqvl_tdx_quote)",
            quote: q[..used].to_vec(),
            collateral: c,
            roots: TdxRoots::production(),
            root_der: att::tdx::intel_sgx_root_ca().to_vec(),
            now: OffsetDateTime::from_unix_timestamp(1_752_919_234).unwrap(),
        };
    }
    eprintln!("bench: ../shared/vectors not found; using a simulated quote");
    let now = OffsetDateTime::now_utc();
    let sim = chrysalis_sim::tdx::SimTdx::new(now, &Default::default()).unwrap();
    let root = sim.pki().root_ca_der().to_vec();
    Case {
        label: "simulated quote",
        quote: sim.quote(&Default::default()),
        collateral: TdxCollateral {
            v3: sim.collateral(),
            simulated_root_ca: None,
        },
        roots: TdxRoots::empty().with_root(att::TrustAnchor::Custom, root.clone()),
        root_der: root,
        now,
    }
}

fn bench(c: &mut Criterion) {
    let k = case();
    eprintln!("bench: {}", k.label);
    let secs = k.now.unix_timestamp() as u64;
    let mut g = c.benchmark_group("tdx");
    g.bench_function("dcap-qvl direct", |b| {
        let v = dcap_qvl::verify::QuoteVerifier::new(k.root_der.clone()).allow_debug(true);
        b.iter(|| {
            v.verify(black_box(&k.quote), &k.collateral.v3, secs)
                .unwrap()
        })
    });
    g.bench_function("chrysalis verify", |b| {
        b.iter(|| {
            att::tdx::verify(
                &att::tdx::TdxQuote::parse(black_box(&k.quote)).unwrap(),
                &k.collateral,
                &k.roots,
                k.now,
            )
            .unwrap()
        })
    });
    let cache = VerificationCache::new(1024, std::time::Duration::from_secs(600));
    let fp = k.collateral.fingerprint();
    g.bench_function("cached re-verification", |b| {
        b.iter(|| {
            let key = VerificationCache::key(black_box(&k.quote), &fp);
            cache
                .get_or_verify(key, k.now, || {
                    att::tdx::verify(
                        &att::tdx::TdxQuote::parse(&k.quote).unwrap(),
                        &k.collateral,
                        &k.roots,
                        k.now,
                    )
                })
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);

/// Reads criterion's estimate (ns per iteration: the slope of the linear
/// sampling fit, as criterion prints it; else the mean) for one benchmark.
fn mean_ns(name: &str) -> Option<f64> {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
        .join("criterion/tdx")
        .join(name)
        .join("new/estimates.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(dir).ok()?).ok()?;
    v["slope"]["point_estimate"]
        .as_f64()
        .or_else(|| v["mean"]["point_estimate"].as_f64())
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    if let (Some(qvl), Some(ours), Some(cached)) = (
        mean_ns("dcap-qvl direct"),
        mean_ns("chrysalis verify"),
        mean_ns("cached re-verification"),
    ) {
        println!();
        println!(
            "TDX full verification: dcap-qvl {:.1} µs, chrysalis {:.1} µs ({:.0}/s)",
            qvl / 1e3,
            ours / 1e3,
            1e9 / ours
        );
        println!(
            "ratio (dcap-qvl time / chrysalis time) = {:.3}  (goal ≥ 0.95)",
            qvl / ours
        );
        println!(
            "cached re-verification = {:.2} µs  (goal ≤ 5 µs)",
            cached / 1e3
        );
    }
}
