//! The bits a malicious host chooses, each refused by the verifier or the
//! default policy: TD-under-debug bits, SEPT_VE_DISABLE, the host/owner
//! TDX identities, TD attributes and XFAM, the SNP TCB floor and TCB
//! ordering, the SNP guest policy, VMPL and ID-block keys. Every piece of
//! evidence is authentic simulated evidence, re-signed as the simulated
//! hardware would, that differs from a genuine Chrysalis node in exactly
//! one field.

use chrysalis_attestation as att;

use att::snp::SnpReport;
use att::tdx::{TdxCollateral, TdxQuote, TdxRoots};
use att::{CheckContext, Decision, Error, Policy, TcbStatus, VerifiedEvidence};
use chrysalis_sim::snp::{SimSnpAuthority, SIM_TCB};
use chrysalis_sim::tdx::{SimTdInput, SimTdx, SimTdxOptions, SIM_TD_ATTRIBUTES, SIM_XFAM};
use time::OffsetDateTime;

fn tdx_sim() -> SimTdx {
    SimTdx::new(OffsetDateTime::now_utc(), &SimTdxOptions::default()).unwrap()
}

fn verify_td(sim: &SimTdx, td: &SimTdInput) -> att::Result<VerifiedEvidence> {
    let quote = sim.quote(td);
    att::tdx::verify(
        &TdxQuote::parse(&quote).unwrap(),
        &TdxCollateral {
            v3: sim.collateral(),
            simulated_root_ca: Some(sim.pki().root_ca_der().to_vec()),
        },
        &TdxRoots::empty(),
        OffsetDateTime::now_utc(),
    )
}

/// The default policy, except that simulated evidence is allowed (so that
/// the only reasons left are the ones under test).
fn dev() -> Policy {
    Policy::default().allow_simulated(true)
}

fn check(p: &Policy, ev: &VerifiedEvidence) -> Decision {
    p.check(ev, &CheckContext::default())
}

fn has(d: &Decision, needle: &str) -> bool {
    d.reasons.iter().any(|r| r.contains(needle))
}

#[test]
fn genuine_simulated_td_is_accepted_by_the_dev_policy() {
    let sim = tdx_sim();
    let ev = verify_td(&sim, &SimTdInput::default()).unwrap();
    assert!(!ev.debug());
    let d = check(&dev(), &ev);
    assert!(d.accepted, "{:?}", d.reasons);
}

#[test]
fn td_under_debug_bits_other_than_debug_are_debug() {
    let sim = tdx_sim();
    // Bits 4..6 (the former "profiling" bits) pass dcap-qvl when debug is
    // allowed, which the verifier must allow to name a debug TD.
    for bit in 4..=6 {
        let ev = verify_td(
            &sim,
            &SimTdInput {
                td_attributes: SIM_TD_ATTRIBUTES | 1 << bit,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(ev.debug(), "TUD bit {bit} must count as debug");
        let d = check(&dev(), &ev);
        assert!(!d.accepted, "bit {bit}");
        assert!(has(&d, "TUD byte"), "bit {bit}: {:?}", d.reasons);
        let allowed = Policy {
            allow_debug: true,
            ..dev()
        };
        assert!(
            check(&allowed, &ev).accepted,
            "allow_debug accepts bit {bit}"
        );
    }
    // Bits 1..3 and 7 are reserved: refused at verification, named.
    for bit in [1, 2, 3, 7] {
        let e = verify_td(
            &sim,
            &SimTdInput {
                td_attributes: SIM_TD_ATTRIBUTES | 1 << bit,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(
            matches!(&e, Error::Rejected(m) if m.contains("reserved bits")),
            "bit {bit}: {e}"
        );
    }
}

#[test]
fn sept_ve_disable_clear_is_refused_and_named() {
    let sim = tdx_sim();
    let e = verify_td(
        &sim,
        &SimTdInput {
            td_attributes: 0,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(&e, Error::Rejected(m) if m.contains("SEPT_VE_DISABLE (bit 28) is clear")),
        "{e}"
    );
    assert_eq!(e.category(), att::ErrorCategory::Rejected);
}

#[test]
fn host_chosen_identities_must_be_zero_unless_pinned() {
    let sim = tdx_sim();
    let v = [0x42u8; 48];
    let cases: [(&str, SimTdInput); 3] = [
        (
            "MRCONFIGID",
            SimTdInput {
                mrconfigid: v,
                ..Default::default()
            },
        ),
        (
            "MROWNER",
            SimTdInput {
                mrowner: v,
                ..Default::default()
            },
        ),
        (
            "MROWNERCONFIG",
            SimTdInput {
                mrownerconfig: v,
                ..Default::default()
            },
        ),
    ];
    for (field, td) in cases {
        let ev = verify_td(&sim, &td).unwrap();
        // No measurement sets: must be zero.
        let d = check(&dev(), &ev);
        assert!(!d.accepted, "{field}");
        assert!(
            d.reasons
                .iter()
                .any(|r| r.starts_with(field) && r.contains("all-zero unless the policy pins it")),
            "{field}: {:?}",
            d.reasons
        );
        // A set that pins the other registers but not this one: zero.
        let set = format!(
            "[[tdx.measurements]]\nname = \"rel\"\nmrtd = \"{}\"\n",
            "00".repeat(48)
        );
        let p = Policy::from_toml(&format!("allow_simulated = true\n{set}")).unwrap();
        let d = check(&p, &ev);
        assert!(
            d.reasons
                .iter()
                .any(|r| r.starts_with(field) && r.contains("rel pins none")),
            "{field}: {:?}",
            d.reasons
        );
        // Pinned: accepted.
        let p = Policy::from_toml(&format!(
            "allow_simulated = true\n{set}{} = \"{}\"\n",
            field.to_lowercase(),
            hex::encode(v)
        ))
        .unwrap();
        let d = check(&p, &ev);
        assert!(d.accepted, "{field}: {:?}", d.reasons);
    }
}

#[test]
fn td_attributes_and_xfam_are_pinnable() {
    let sim = tdx_sim();
    let pin = |attrs: u64, xfam: u64| {
        Policy::from_toml(&format!(
            "allow_simulated = true\n[[tdx.measurements]]\nname = \"rel\"\ntd_attributes = \"{}\"\nxfam = \"{}\"\n",
            hex::encode(attrs.to_le_bytes()),
            hex::encode(xfam.to_le_bytes())
        ))
        .unwrap()
    };
    let ev = verify_td(&sim, &SimTdInput::default()).unwrap();
    let d = check(&pin(SIM_TD_ATTRIBUTES, SIM_XFAM), &ev);
    assert!(d.accepted, "{:?}", d.reasons);

    // PKS (bit 30) added by the host: authentic, but not the pinned value.
    let ev = verify_td(
        &sim,
        &SimTdInput {
            td_attributes: SIM_TD_ATTRIBUTES | 1 << 30,
            xfam: SIM_XFAM | 1 << 9,
            ..Default::default()
        },
    )
    .unwrap();
    let d = check(&pin(SIM_TD_ATTRIBUTES, SIM_XFAM), &ev);
    assert!(
        has(&d, "TD_ATTRIBUTES is 0000005000000000"),
        "{:?}",
        d.reasons
    );
    assert!(has(&d, "XFAM is"), "{:?}", d.reasons);

    let e = Policy::from_toml("[[tdx.measurements]]\nxfam = \"0102\"\n").unwrap_err();
    assert!(
        e.to_string()
            .contains("tdx.measurements[0].xfam: 2 bytes, expected 8"),
        "{e}"
    );
}

// --- SNP -------------------------------------------------------------------

fn verify_snp(sim: &SimSnpAuthority, report: &SnpReport) -> att::Result<VerifiedEvidence> {
    att::snp::verify(
        report,
        &sim.certificates(),
        &sim.roots(),
        OffsetDateTime::now_utc(),
    )
}

/// A signed report from `sim` after `change`.
fn snp_report(sim: &SimSnpAuthority, change: impl FnOnce(&mut SnpReport)) -> SnpReport {
    let mut r = sim.unsigned_report([1; 64], [2; 48], [3; 32]);
    change(&mut r);
    sim.sign(&mut r);
    r
}

#[test]
fn snp_tcb_below_the_product_floor_is_out_of_date() {
    // The default simulated chip is a patched Milan: up to date.
    let sim = SimSnpAuthority::generate().unwrap();
    let ev = verify_snp(&sim, &snp_report(&sim, |_| {})).unwrap();
    assert_eq!(ev.tcb_status(), TcbStatus::UpToDate);
    assert!(check(&dev(), &ev).accepted);

    // The same chip on microcode 0x0A0011D5, the last Milan patch without
    // the AMD-SB-3019 (EntrySign) fix: the VCEK certifies that TCB.
    let (bl, tee, snp, _) = SIM_TCB;
    let old = SimSnpAuthority::generate_with_tcb((bl, tee, snp, 0xD5)).unwrap();
    let ev = verify_snp(&old, &snp_report(&old, |_| {})).unwrap();
    assert_eq!(ev.tcb_status(), TcbStatus::OutOfDate);
    assert!(
        ev.tcb_notes()
            .iter()
            .any(|n| n.contains("microcode SPL 213") && n.contains("AMD-SB-3019")),
        "{:?}",
        ev.tcb_notes()
    );
    let d = check(&dev(), &ev);
    assert!(!d.accepted);
    assert!(
        has(&d, "TCB status OutOfDate is not accepted"),
        "{:?}",
        d.reasons
    );
    assert!(has(&d, "microcode SPL 213"), "{:?}", d.reasons);
    let d = check(&dev().accept_tcb([TcbStatus::OutOfDate]), &ev);
    assert!(d.accepted, "{:?}", d.reasons);
}

#[test]
fn snp_tcb_fields_out_of_order_are_refused() {
    let sim = SimSnpAuthority::generate().unwrap();
    let lower = |t: att::snp::TcbVersion| {
        let mut b = t.raw().to_le_bytes();
        b[7] -= 1; // microcode (Milan layout)
        att::snp::TcbVersion::from_raw(u64::from_le_bytes(b), t.layout())
    };
    // The reported TCB above the firmware actually running.
    let r = snp_report(&sim, |r| r.current_tcb = lower(r.current_tcb));
    let e = verify_snp(&sim, &r).unwrap_err();
    assert!(
        e.to_string()
            .contains("REPORTED_TCB microcode SPL 219 is above its CURRENT_TCB 218"),
        "{e}"
    );
    // A committed (anti-rollback) TCB below the reported one is normal.
    let r = snp_report(&sim, |r| r.committed_tcb = lower(r.committed_tcb));
    assert!(verify_snp(&sim, &r).is_ok());
}

#[test]
fn snp_guest_policy_bits_and_vmpl_are_checked() {
    let sim = SimSnpAuthority::generate().unwrap();
    let verify = |change: fn(&mut SnpReport)| verify_snp(&sim, &snp_report(&sim, change)).unwrap();

    let ev = verify(|r| r.policy.0 |= 1 << 18);
    let d = check(&dev(), &ev);
    assert!(has(&d, "MIGRATE_MA (bit 18)"), "{:?}", d.reasons);
    let allow =
        Policy::from_toml("allow_simulated = true\n[snp]\nallow_migrate_ma = true\n").unwrap();
    assert!(check(&allow, &ev).accepted);

    let ev = verify(|r| r.vmpl = 1);
    let d = check(&dev(), &ev);
    assert!(
        has(&d, "VMPL 1, policy allows at most 0"),
        "{:?}",
        d.reasons
    );
    let allow = Policy::from_toml("allow_simulated = true\n[snp]\nmax_vmpl = 1\n").unwrap();
    assert!(check(&allow, &ev).accepted);

    // SMT: allowed by default, refusable.
    let ev = verify(|_| {});
    assert!(check(&dev(), &ev).accepted);
    let no_smt = Policy::from_toml("allow_simulated = true\n[snp]\nallow_smt = false\n").unwrap();
    let d = check(&no_smt, &ev);
    assert!(has(&d, "allows SMT (bit 16)"), "{:?}", d.reasons);
    let ev = verify(|r| r.policy.0 &= !(1 << 16));
    assert!(check(&no_smt, &ev).accepted);

    // ABI minimum: the sim's guest policy requires ABI 0.0.
    let abi = Policy::from_toml("allow_simulated = true\n[snp]\nmin_abi = \"1.51\"\n").unwrap();
    let d = check(&abi, &verify(|_| {}));
    assert!(
        has(
            &d,
            "requires firmware ABI 0.0, policy requires at least 1.51"
        ),
        "{:?}",
        d.reasons
    );
    let ev = verify(|r| r.policy.0 |= 0x0133);
    assert!(check(&abi, &ev).accepted);
    assert!(Policy::from_toml("[snp]\nmin_abi = \"one\"\n").is_err());
}

#[test]
fn snp_id_key_and_author_key_digests_are_pinnable() {
    let sim = SimSnpAuthority::generate().unwrap();
    let id_key = [0x1du8; 48];
    let author = [0xa7u8; 48];
    let ev = verify_snp(
        &sim,
        &snp_report(&sim, |r| {
            r.id_key_digest = id_key;
            r.author_key_digest = author;
            r.key_info.0 |= 1; // AUTHOR_KEY_EN
            r.family_id = [5; 16];
        }),
    )
    .unwrap();
    let policy = |id: [u8; 48], au: [u8; 48]| {
        Policy::from_toml(&format!(
            "allow_simulated = true\n[[snp.measurements]]\nname = \"rel\"\nfamily_id = \"{}\"\nid_key_digest = \"{}\"\nauthor_key_digest = \"{}\"\n",
            hex::encode([5u8; 16]),
            hex::encode(id),
            hex::encode(au)
        ))
        .unwrap()
    };
    let d = check(&policy(id_key, author), &ev);
    assert!(d.accepted, "{:?}", d.reasons);
    // The same family id under another ID key: the host signed its own ID block.
    let d = check(&policy([0x66; 48], author), &ev);
    assert!(has(&d, "ID_KEY_DIGEST is"), "{:?}", d.reasons);
    let d = check(&policy(id_key, [0x66; 48]), &ev);
    assert!(has(&d, "AUTHOR_KEY_DIGEST is"), "{:?}", d.reasons);

    // No author key in the report at all.
    let ev = verify_snp(
        &sim,
        &snp_report(&sim, |r| {
            r.id_key_digest = id_key;
            r.family_id = [5; 16];
        }),
    )
    .unwrap();
    let d = check(&policy(id_key, [0; 48]), &ev);
    assert!(
        has(&d, "no author key (AUTHOR_KEY_EN clear)"),
        "{:?}",
        d.reasons
    );
}

#[test]
fn report_data_in_a_policy_conflicts_with_a_caller_binding() {
    let sim = tdx_sim();
    let ev = verify_td(
        &sim,
        &SimTdInput {
            report_data: [9; 64],
            ..Default::default()
        },
    )
    .unwrap();
    let p = Policy {
        report_data: Some(hex::encode([9u8; 64])),
        ..dev()
    };
    // Alone, the policy's report_data is checked...
    assert!(check(&p, &ev).accepted);
    // ...but next to a caller's own binding it is refused, never ignored.
    let d = p.check(
        &ev,
        &CheckContext {
            expected_report_data: Some([9; 64]),
            ..Default::default()
        },
    );
    assert!(!d.accepted);
    assert!(has(&d, "binds report_data itself"), "{:?}", d.reasons);
}

#[test]
fn snp_amd_crl_is_checked_when_given() {
    let sim = SimSnpAuthority::generate().unwrap();
    let report = snp_report(&sim, |_| {});
    let now = OffsetDateTime::now_utc();
    let (from, to) = (
        now - time::Duration::hours(1),
        now + time::Duration::days(7),
    );
    let with_crl = |crl: Vec<u8>| sim.certificates().with_crl(crl);
    let verify =
        |certs: &att::snp::SnpCertificates| att::snp::verify(&report, certs, &sim.roots(), now);

    // A current CRL that lists nothing: verifies.
    let good = sim.crl_der(false, from, to).unwrap();
    verify(&with_crl(good.clone())).unwrap();
    // Sorted from files like the certificates, DER or PEM.
    let pem = format!(
        "-----BEGIN X509 CRL-----\n{}\n-----END X509 CRL-----\n",
        base64_lines(&good)
    );
    for blob in [good.clone(), pem.into_bytes()] {
        let certs =
            att::snp::SnpCertificates::from_files_bytes(vec![sim.chain_pem().into_bytes(), blob])
                .unwrap();
        assert_eq!(certs.crl.as_deref(), Some(good.as_slice()));
    }

    // The ASK revoked: refused as revoked.
    let e = verify(&with_crl(sim.crl_der(true, from, to).unwrap())).unwrap_err();
    assert!(matches!(&e, Error::Revoked(m) if m.contains("ASK")), "{e}");

    // A stale CRL fails closed.
    let stale = sim
        .crl_der(
            false,
            now - time::Duration::days(9),
            now - time::Duration::days(2),
        )
        .unwrap();
    let e = verify(&with_crl(stale)).unwrap_err();
    assert!(
        matches!(&e, Error::StaleCollateral(m) if m.contains("AMD CRL expired")),
        "{e}"
    );

    // A CRL signed by another ARK (with the same name): not this chain's.
    let other = SimSnpAuthority::generate().unwrap();
    let e = verify(&with_crl(other.crl_der(false, from, to).unwrap())).unwrap_err();
    assert!(
        e.to_string().contains("does not verify with the ARK's key"),
        "{e}"
    );

    // Without a CRL (not cached): verifies as before.
    verify(&sim.certificates()).unwrap();
}

fn base64_lines(der: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in der.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                s.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s.as_bytes()
        .chunks(64)
        .map(|l| std::str::from_utf8(l).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}
