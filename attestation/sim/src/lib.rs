//! Simulated TEE: evidence signed by roots generated at run time.
//!
//! The simulator exists so that the *real* verification code can run end to
//! end on machines without a TEE. Its roots are generated fresh each time and
//! are never pinned: evidence that chains to them verifies with
//! [`chrysalis_attestation::TrustAnchor::Simulated`], which the default policy rejects.
//!
//! Rooms:
//!
//! * [`tdx`]: a simulated Intel TDX platform, split along the seams of what
//!   Intel provides: `tdx::pki` (root CA, PCK Platform CA and PCK leaf with
//!   the SGX extension, TCB signing certificate, CRLs), `tdx::collateral`
//!   (TCB info and QE identity JSON, assembled and signed) and `tdx::quote`
//!   (header, TD report body, QE report, signatures), with the platform's
//!   fixed values and the collateral options beside them. Its public types
//!   are re-exported at `chrysalis_sim::tdx::*`.
//! * [`snp`]: a simulated AMD SEV-SNP chip, split the same way: `snp::pki`
//!   (the ARK/ASK/VCEK hierarchy with AMD's VCEK extensions) and
//!   `snp::report` (version 3 reports, signed by the VCEK). Re-exported at
//!   `chrysalis_sim::snp::*`.
//! * [`SimProvider`] (this file): the `sim` [`EvidenceProvider`] over either,
//!   with fixed, recognisable measurements ([`sim_measurement`]) and the
//!   run-time state a real TEE keeps (RTMR3, SNP `HOST_DATA`).
//! * [`release`]: [`SimRelease`], a published configuration's registers
//!   (`--sim-release NAME --sim-configuration NAME`), so the simulator plays
//!   a node of a published release.
//! * [`overrides`]: [`SimOverrides`], the typed `--sim-set FIELD=VALUE`
//!   model: any TD report or SNP report field, re-signed as the simulated
//!   hardware would, so the evidence is authentic simulated evidence of a
//!   node that differs in exactly that field (the malicious-host suite
//!   plays hostile hosts with it).
//! * [`error`]: the one error type of that configuration.
//!
//! A node is built in layers, each over the one before: the simulator's
//! defaults, then the release's registers, then RTMR3 as extended at run
//! time (and the `HOST_DATA` the host launched with), then the `--sim-set`
//! overrides (so `--sim-set rtmr3=…` wins over the extends):
//!
//! ```
//! use chrysalis_attestation::provider::EvidenceProvider;
//! use chrysalis_sim::{SimOverrides, SimProvider, SimRelease};
//!
//! let release = SimRelease::builtin("chrysalis-0.2.0-cpu", "snp-2cpu-EPYC-v4", None)?;
//! let sim = SimProvider::configured(release.tee(), Some(&release), SimOverrides::parse_all(&["vmpl=1"])?)?
//!     .with_host_data(SimRelease::default_host_data());
//! let evidence = sim.evidence(&[0; 64])?;
//! let report = chrysalis_attestation::snp::SnpReport::parse(&evidence.bytes)?;
//! assert_eq!(report.vmpl, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

/// Marker placed at the start of simulated evidence's free-form fields
/// (TDX header user data, SNP chip id) so humans can spot it. Trust never
/// depends on it: the verifier's anchor decides.
pub const SIM_MARKER: &[u8] = chrysalis_attestation::simulated::SIM_MARKER;

pub mod error;
pub mod overrides;
pub mod release;
pub mod snp;
pub mod tdx;

pub use error::Error;
pub use overrides::{SimField, SimOverride, SimOverrides};
pub use release::SimRelease;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha384};
use time::OffsetDateTime;

use chrysalis_attestation::error::Result;
use chrysalis_attestation::provider::{EvidenceProvider, RawEvidence};
use chrysalis_attestation::snp::SnpCertificates;
use chrysalis_attestation::tdx::TdxCollateral;
use chrysalis_attestation::verified::Tee;

/// The `sim` evidence provider: a simulated TDX platform or SNP chip with
/// roots generated when it is created.
///
/// Its measurements are fixed, recognisable values
/// (`SHA-384("CHRYSALIS-SIM <register>")`), so a policy can pin them in
/// development exactly as it pins real ones in production.
///
/// Like real hardware, it keeps run-time state shared by its clones: RTMR3
/// once extended ([`EvidenceProvider::extend_rtmr3`]: from then on RTMR3 is
/// the replay of the extended digests from zero, as on a real TD, so
/// `chrysalis measure --config` predicts it) and the SNP `HOST_DATA` the
/// "host" launched it with ([`SimProvider::with_host_data`]).
#[derive(Clone)]
pub struct SimProvider {
    inner: Arc<Inner>,
    rtmr3: Arc<Mutex<Option<[u8; 48]>>>,
    host_data: Option<[u8; 32]>,
    /// The emulated release's registers (applied before RTMR3).
    release: SimOverrides,
    /// `--sim-set` (applied last).
    overrides: SimOverrides,
}

// Created once per piece of evidence and never stored in bulk: boxing the
// larger variant would only add an allocation and awkward matching.
#[allow(clippy::large_enum_variant)]
enum Inner {
    Tdx(tdx::SimTdx),
    Snp(snp::SimSnpAuthority),
}

/// The fixed value the simulator uses for a named register.
pub fn sim_measurement(register: &str) -> [u8; 48] {
    Sha384::digest(format!("CHRYSALIS-SIM {register}")).into()
}

impl SimProvider {
    /// A simulated TEE of the given kind, with fresh roots valid from now.
    pub fn new(tee: Tee) -> Result<Self> {
        Self::new_at(tee, OffsetDateTime::now_utc())
    }

    /// Like [`SimProvider::new`], with collateral valid around `now`.
    pub fn new_at(tee: Tee, now: OffsetDateTime) -> Result<Self> {
        let inner = match tee {
            Tee::Tdx => Inner::Tdx(tdx::SimTdx::new(now, &tdx::SimTdxOptions::default())?),
            Tee::Snp => Inner::Snp(snp::SimSnpAuthority::generate()?),
        };
        Ok(Self {
            inner: Arc::new(inner),
            rtmr3: Arc::new(Mutex::new(None)),
            host_data: None,
            release: SimOverrides::new(),
            overrides: SimOverrides::new(),
        })
    }

    /// A simulated TEE of kind `tee` playing `release` (when given: its
    /// registers replace the simulator's defaults) with `overrides` applied
    /// to every report after that and after RTMR3's extends, then signed by
    /// the simulated hardware.
    ///
    /// Refuses an override of the other TEE's report, and a `release` of
    /// another TEE. With an SNP `reported_tcb` override the simulated VCEK
    /// is issued for that TCB (as AMD's KDS issues a VCEK for any TCB a chip
    /// reports), so the report is authentic evidence of a platform at that
    /// TCB.
    pub fn configured(
        tee: Tee,
        release: Option<&SimRelease>,
        overrides: SimOverrides,
    ) -> std::result::Result<Self, Error> {
        if let Some(r) = release {
            if r.tee() != tee {
                return Err(Error::Configuration {
                    label: r.label().to_owned(),
                    message: format!("is a {} configuration, not {tee}", r.tee()),
                });
            }
        }
        overrides.check_tee(tee)?;
        let inner = match (tee, overrides.int(SimField::ReportedTcb)) {
            (Tee::Snp, Some(raw)) => {
                let t = chrysalis_attestation::snp::TcbVersion::from_raw(
                    raw,
                    chrysalis_attestation::snp::TcbLayout::MilanGenoa,
                );
                Inner::Snp(snp::SimSnpAuthority::generate_with_tcb((
                    t.bootloader(),
                    t.tee(),
                    t.snp(),
                    t.microcode(),
                ))?)
            }
            (Tee::Snp, None) => Inner::Snp(snp::SimSnpAuthority::generate()?),
            (Tee::Tdx, _) => Inner::Tdx(tdx::SimTdx::new(
                OffsetDateTime::now_utc(),
                &tdx::SimTdxOptions::default(),
            )?),
        };
        Ok(Self {
            inner: Arc::new(inner),
            rtmr3: Arc::new(Mutex::new(None)),
            host_data: None,
            release: release.map(|r| r.registers().clone()).unwrap_or_default(),
            overrides,
        })
    }

    /// The `--sim-set` overrides this simulator applies.
    pub fn overrides(&self) -> &SimOverrides {
        &self.overrides
    }

    /// The same simulated TEE launched with this SNP `HOST_DATA` (what a
    /// host sets when it starts a real SNP guest). Ignored for TDX.
    pub fn with_host_data(mut self, host_data: [u8; 32]) -> Self {
        self.host_data = Some(host_data);
        self
    }

    fn current_rtmr3(&self) -> [u8; 48] {
        let r = self.rtmr3.lock().unwrap_or_else(|p| p.into_inner());
        r.unwrap_or_else(|| sim_measurement("RTMR3"))
    }

    /// The TDX collateral (with the simulated root) for TDX simulators.
    pub fn tdx_collateral(&self) -> Option<TdxCollateral> {
        match &*self.inner {
            Inner::Tdx(t) => Some(TdxCollateral {
                v3: t.collateral(),
                simulated_root_ca: Some(t.pki().root_ca_der().to_vec()),
            }),
            Inner::Snp(_) => None,
        }
    }

    /// The VCEK and its simulated ASK/ARK chain, for SNP simulators.
    pub fn snp_certificates(&self) -> Option<SnpCertificates> {
        match &*self.inner {
            Inner::Snp(s) => Some(s.certificates()),
            Inner::Tdx(_) => None,
        }
    }

    /// Writes the collateral needed to verify this simulator's evidence next
    /// to `evidence_path` and returns its path: `FILE.collateral.json`
    /// (TDX, QuoteCollateralV3 plus the simulated root) or `FILE.certs.pem`
    /// (SNP: VCEK, ASK, ARK).
    pub fn write_collateral(&self, evidence_path: &Path) -> Result<PathBuf> {
        let (suffix, bytes) = match &*self.inner {
            Inner::Tdx(_) => (
                "collateral.json",
                self.tdx_collateral()
                    .map(|c| c.to_json())
                    .unwrap_or_default()
                    .into_bytes(),
            ),
            Inner::Snp(s) => ("certs.pem", s.chain_pem().into_bytes()),
        };
        let mut p = evidence_path.as_os_str().to_owned();
        p.push(".");
        p.push(suffix);
        let p = PathBuf::from(p);
        chrysalis_attestation::fsutil::write_atomic(&p, &bytes)?;
        Ok(p)
    }
}

impl EvidenceProvider for SimProvider {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn extend_rtmr3(&self, digest: &[u8; 48]) -> Result<()> {
        if matches!(&*self.inner, Inner::Snp(_)) {
            return Err(chrysalis_attestation::error::Error::Unsupported(
                "SEV-SNP has no runtime measurement register (HOST_DATA carries the host's configuration digest)".into(),
            ));
        }
        let mut r = self.rtmr3.lock().unwrap_or_else(|p| p.into_inner());
        let mut h = Sha384::new();
        h.update(r.unwrap_or([0; 48]));
        h.update(digest);
        *r = Some(h.finalize().into());
        Ok(())
    }

    fn tee(&self) -> Tee {
        match &*self.inner {
            Inner::Tdx(_) => Tee::Tdx,
            Inner::Snp(_) => Tee::Snp,
        }
    }

    fn evidence(&self, report_data: &[u8; 64]) -> Result<RawEvidence> {
        let (tee, bytes) = match &*self.inner {
            Inner::Tdx(t) => {
                let input = tdx::SimTdInput {
                    mrtd: sim_measurement("MRTD"),
                    rtmr: [
                        sim_measurement("RTMR0"),
                        sim_measurement("RTMR1"),
                        sim_measurement("RTMR2"),
                        self.current_rtmr3(),
                    ],
                    report_data: *report_data,
                    ..Default::default()
                };
                // Release registers never include RTMR3, so the extends
                // stand until an override replaces them.
                let quote = t.quote_edited(&input, |td| {
                    self.release.apply_td(td);
                    self.overrides.apply_td(td);
                });
                (Tee::Tdx, quote.to_bytes())
            }
            Inner::Snp(s) => {
                let host_data = self.host_data.unwrap_or_else(|| {
                    let mut h = [0u8; 32];
                    h.copy_from_slice(&sim_measurement("HOST_DATA")[..32]);
                    h
                });
                let mut report =
                    s.unsigned_report(*report_data, sim_measurement("MEASUREMENT"), host_data);
                self.release.apply_snp(&mut report);
                self.overrides.apply_snp(&mut report);
                s.sign(&mut report);
                (Tee::Snp, report.to_bytes())
            }
        };
        Ok(RawEvidence {
            tee,
            bytes,
            aux: None,
            provider: "sim",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrysalis_attestation::snp::SnpReport;
    use chrysalis_attestation::tdx::TdxQuote;

    fn sha384_extend(reg: [u8; 48], d: &[u8; 48]) -> [u8; 48] {
        let mut h = Sha384::new();
        h.update(reg);
        h.update(d);
        h.finalize().into()
    }

    #[test]
    fn rtmr3_extensions_replay_from_zero_and_are_shared_by_clones() {
        let p = SimProvider::new(Tee::Tdx).unwrap();
        let rtmr3 = |p: &SimProvider| {
            let e = p.evidence(&[0; 64]).unwrap();
            TdxQuote::parse(&e.bytes).unwrap().body.td10().rtmr[3]
        };
        assert_eq!(
            rtmr3(&p),
            sim_measurement("RTMR3"),
            "unextended: the fixed value"
        );
        let (a, b) = ([1u8; 48], [2u8; 48]);
        p.extend_rtmr3(&a).unwrap();
        p.clone().extend_rtmr3(&b).unwrap();
        let want = sha384_extend(sha384_extend([0; 48], &a), &b);
        assert_eq!(rtmr3(&p), want);
    }

    fn verify(p: &SimProvider) -> chrysalis_attestation::VerifiedEvidence {
        use chrysalis_attestation::verifier::{Anchors, Collateral};
        let raw = p.evidence(&[3; 64]).unwrap();
        let decoded = chrysalis_attestation::evidence::decode(&raw.bytes).unwrap();
        let collateral = match (p.tdx_collateral(), p.snp_certificates()) {
            (Some(t), _) => Collateral::Tdx(t),
            (None, Some(s)) => Collateral::Snp(s),
            _ => unreachable!(),
        };
        chrysalis_attestation::verifier::verify(
            &decoded,
            &collateral,
            &Anchors::production(),
            OffsetDateTime::now_utc(),
        )
        .unwrap()
    }

    #[test]
    fn a_release_then_extends_then_overrides_and_the_result_verifies() {
        use chrysalis_attestation::Identity;
        let release =
            SimRelease::builtin("chrysalis-0.2.0-cpu", "tdx-2cpu-2048m-0gpu", None).unwrap();
        let p = SimProvider::configured(
            Tee::Tdx,
            Some(&release),
            SimOverrides::parse_all(&["td_attributes=0x10000010"]).unwrap(),
        )
        .unwrap();
        p.extend_rtmr3(&[1; 48]).unwrap();
        let v = verify(&p);
        let Identity::Tdx(id) = v.identity() else {
            panic!("TDX")
        };
        assert_eq!(
            Some(&id.mrtd[..]),
            release.registers().bytes(SimField::Mrtd)
        );
        assert_eq!(
            Some(&id.rtmr[0][..]),
            release.registers().bytes(SimField::Rtmr0),
            "the published RTMR0"
        );
        assert_eq!(id.rtmr[3], sha384_extend([0; 48], &[1; 48]));
        assert_eq!(id.td_attributes, [0x10, 0, 0, 0x10, 0, 0, 0, 0]);
        assert!(v.debug(), "TUD bit 4 makes a TD under debug");
        assert_eq!(v.report_data(), &[3; 64]);

        // An RTMR3 override wins over the extends.
        let p = SimProvider::configured(
            Tee::Tdx,
            None,
            SimOverrides::parse_all(&[format!("rtmr3={}", "ab".repeat(48))]).unwrap(),
        )
        .unwrap();
        p.extend_rtmr3(&[1; 48]).unwrap();
        let Identity::Tdx(id) = verify(&p).identity().clone() else {
            panic!("TDX")
        };
        assert_eq!(id.rtmr[3], [0xab; 48]);
    }

    #[test]
    fn snp_overrides_are_signed_by_the_vcek_and_reported_tcb_gets_its_own_vcek() {
        use chrysalis_attestation::{Identity, TcbStatus};
        let release = SimRelease::builtin("chrysalis-0.2.0-cpu", "snp-2cpu-EPYC-v4", None).unwrap();
        // Milan: bootloader 4, TEE 0, SNP 21 (below the floor's 22), microcode 219.
        let low = u64::from_le_bytes([4, 0, 0, 0, 0, 0, 21, 219]);
        let p = SimProvider::configured(
            Tee::Snp,
            Some(&release),
            SimOverrides::parse_all(&["vmpl=1".to_owned(), format!("reported_tcb={low:#x}")])
                .unwrap(),
        )
        .unwrap()
        .with_host_data(SimRelease::default_host_data());
        let v = verify(&p);
        let Identity::Snp(id) = v.identity() else {
            panic!("SNP")
        };
        assert_eq!(id.vmpl, 1);
        assert_eq!(
            Some(&id.measurement[..]),
            release.registers().bytes(SimField::Measurement)
        );
        assert_eq!(id.host_data, SimRelease::default_host_data());
        assert_eq!(id.reported_tcb.snp(), 21);
        assert_eq!(v.tcb_status(), TcbStatus::OutOfDate);

        let e = SimProvider::configured(Tee::Tdx, Some(&release), SimOverrides::new())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("is a snp configuration, not tdx"), "{e}");
        let e = SimProvider::configured(
            Tee::Tdx,
            None,
            SimOverrides::parse_all(&["vmpl=1"]).unwrap(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("vmpl"), "{e}");
    }

    #[test]
    fn snp_has_no_rtmr_but_takes_host_data() {
        let p = SimProvider::new(Tee::Snp).unwrap();
        let e = p.extend_rtmr3(&[0; 48]).unwrap_err();
        assert!(e.to_string().contains("HOST_DATA"), "{e}");
        let p = p.with_host_data([9; 32]);
        let r = SnpReport::parse(&p.evidence(&[0; 64]).unwrap().bytes).unwrap();
        assert_eq!(r.host_data, [9; 32]);
    }
}
