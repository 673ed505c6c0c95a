//! Verification of an SEV-SNP report against a root of trust.
//!
//! The steps, each failing with its own error (the `step` of
//! [`Error::Verification`] is one of the [`step`] constants):
//!
//! 1. **Product and root.** The product comes from the VEK's issuer (or its
//!    `productName`) and the report's CPUID; they must agree. A supplied ARK
//!    must be byte-identical to a trusted root for that product; without one
//!    the root's ARK is used, and without an ASK/ASVK the root's.
//! 2. **Chain.** ARK self-signature, ARK → ASK/ASVK, ASK/ASVK → VEK, checked
//!    by the `sev` crate's [`Verifiable`] impls (RSASSA-PSS, SHA-384); then
//!    each certificate's validity period at `now`, which `sev` does not
//!    check ([`Error::StaleCollateral`]); AMD's CRL when given
//!    ([`super::crl`]: ARK signature, validity, ASK/ASVK not revoked →
//!    [`Error::Revoked`]).
//! 3. **Binding.** The report's `SIGNING_KEY` names the kind of key
//!    presented; the VEK's TCB extensions equal the report's
//!    `reported_tcb`, component by component; a VCEK's `hwID` equals the
//!    chip id. (Before the signature, so that a certificate for another
//!    chip or TCB is reported as such.)
//! 4. **Report signature.** ECDSA P-384 / SHA-384 over bytes `0..0x2A0`
//!    with the VEK's key.
//! 5. **TCB.** `reported ≤ current` and `committed ≤ current` (what honest
//!    firmware keeps); the reported TCB against the product's floor
//!    ([`super::floor`]): below it, the status is `OutOfDate` with one note
//!    per short component (the default policy rejects it).
//! 6. [`VerifiedEvidence`] with the root's anchor: `Production` only for
//!    AMD's pinned ARKs.

use p384::ecdsa::signature::Verifier;
use sev::certs::snp::{Certificate, Verifiable};
use time::OffsetDateTime;

use super::certs::{
    cert_meta, clamp_anchor, CertMeta, CertRole, SnpCertificates, SnpRoot, SnpRoots,
    VekCertificate, VekKind,
};
use super::report::{SigningKey, SnpReport, SIG_ALGO_ECDSA_P384_SHA384};
use super::tcb::{Product, TcbVersion};
use crate::error::{Error, Result};
use crate::timefmt::{format_rfc3339, human_duration};
use crate::verified::{
    Identity, SnpIdentity, TcbStatus, TrustAnchor, VerifiedEvidence, VerifiedParts,
};

/// The `step` names of SNP verification errors.
pub mod step {
    /// The AMD product could not be determined, or sources disagree.
    pub const PRODUCT: &str = "SNP product";
    /// The ARK is not a trusted root.
    pub const ROOT: &str = "SNP root of trust";
    /// A certificate signature (ARK, ASK/ASVK, VEK) does not verify.
    pub const CHAIN: &str = "SNP certificate chain";
    /// The report's own signature does not verify.
    pub const REPORT_SIGNATURE: &str = "SNP report signature";
    /// The VEK's TCB extensions differ from the report's reported TCB.
    pub const TCB: &str = "SNP VEK TCB";
    /// The VCEK's hwID differs from the report's chip id.
    pub const CHIP_ID: &str = "SNP chip id";
    /// The report's SIGNING_KEY field does not name the verifying key kind.
    pub const SIGNING_KEY: &str = "SNP signing key";
}

/// A VEK whose chain to a trusted root verified.
#[derive(Debug, Clone)]
pub struct VerifiedChain {
    /// The VCEK/VLEK, parsed.
    pub vek: VekCertificate,
    /// The product whose root the chain ended at.
    pub product: Product,
    /// The anchor kind of that root (`Production` only for a pinned ARK).
    pub anchor: TrustAnchor,
    /// The earliest `notAfter` of ARK, ASK/ASVK and VEK.
    pub expires: OffsetDateTime,
}

/// Verifies `report` with `certs` against `roots` at time `now`; see the
/// module documentation for the steps.
pub fn verify(
    report: &SnpReport,
    certs: &SnpCertificates,
    roots: &SnpRoots,
    now: OffsetDateTime,
) -> Result<VerifiedEvidence> {
    let vek = VekCertificate::from_der(&certs.vek)?;
    // 1 and 2: product, root, chain.
    let product = product_of(report, &vek)?;
    let chain = check_chain(vek, certs, product, roots, now)?;
    let vek = &chain.vek;

    // 3. The VEK is the key for this report's TCB and chip. Checked before
    // the signature: a certificate for another chip or TCB then gets named
    // as such instead of as a bad signature.
    let reported_tcb = TcbVersion::for_product(report.reported_tcb.raw(), product);
    check_signing_key(report, vek.kind())?;
    check_tcb(vek, &reported_tcb)?;
    if vek.kind() == VekKind::Vcek {
        check_chip_id(report, vek)?;
    }

    // 4. The report's signature.
    check_report_signature(report, vek)?;

    // 5. The report's TCB fields are consistent, and the reported TCB (the
    // one the VEK certifies) meets the product's floor.
    check_tcb_order(report, product)?;
    let floor = super::floor::floor_for(product, report.cpuid);
    let shortfalls = floor.shortfalls(&reported_tcb);
    let tcb_status = if shortfalls.is_empty() {
        TcbStatus::UpToDate
    } else {
        TcbStatus::OutOfDate
    };

    // 6. Evidence, with the anchor of the root the chain ended at.
    let mut tcb_notes = shortfalls;
    if report.current_tcb.raw() != report.reported_tcb.raw() {
        tcb_notes.push(format!(
            "reported TCB ({reported_tcb}) differs from the platform's current TCB ({})",
            TcbVersion::for_product(report.current_tcb.raw(), product)
        ));
    }
    if chain.anchor == TrustAnchor::Simulated {
        tcb_notes.push("simulated AMD root: this evidence proves nothing about hardware".into());
    }
    Ok(VerifiedEvidence::from_verified_parts(VerifiedParts {
        identity: Identity::Snp(SnpIdentity {
            measurement: report.measurement,
            host_data: report.host_data,
            family_id: report.family_id,
            image_id: report.image_id,
            policy: report.policy.raw(),
            guest_svn: report.guest_svn,
            vmpl: report.vmpl,
            chip_id: report.chip_id,
            reported_tcb,
            product,
            vlek: vek.kind() == VekKind::Vlek,
            id_key_digest: report.id_key_digest,
            author_key_digest: report.author_key_digest,
            author_key_en: report.key_info.author_key_en(),
        }),
        anchor: chain.anchor,
        tcb_status,
        advisory_ids: Vec::new(),
        tcb_notes,
        report_data: report.report_data,
        debug: report.policy.debug(),
        verified_at: now,
        collateral_expires: Some(chain.expires),
    }))
}

/// Verifies only the certificate chain ARK → ASK/ASVK → VEK of `certs` for
/// `product` (`None`: the product the VEK names) against `roots` at `now`,
/// e.g. to check a cached VCEK before any report exists.
pub fn verify_chain(
    certs: &SnpCertificates,
    product: Option<Product>,
    roots: &SnpRoots,
    now: OffsetDateTime,
) -> Result<VerifiedChain> {
    let vek = VekCertificate::from_der(&certs.vek)?;
    let product = match (product, vek.product()) {
        (Some(p), _) | (None, Some(p)) => p,
        (None, None) => {
            return Err(Error::verification(
                step::PRODUCT,
                format!(
                    "the {} issuer {:?} names no AMD product; pass one",
                    vek.kind().name(),
                    vek.issuer_cn()
                ),
            ))
        }
    };
    check_chain(vek, certs, product, roots, now)
}

/// Steps 1 and 2: the root for `product`, the CA certificates, the
/// signatures (by `sev`) and the validity periods.
fn check_chain(
    vek: VekCertificate,
    certs: &SnpCertificates,
    product: Product,
    roots: &SnpRoots,
    now: OffsetDateTime,
) -> Result<VerifiedChain> {
    let vek_name = vek.kind().name();
    let issuer = issuer_name(vek.kind());
    let root = select_root(product, certs.ark.as_deref(), roots)?;
    let ark_der = certs.ark.as_deref().unwrap_or(root.ark_der());
    let ask_der = match certs.ask.as_deref() {
        Some(ask) => ask,
        None => match vek.kind() {
            VekKind::Vcek => root.ask_der(),
            VekKind::Vlek => root.asvk_der(),
        }
        .ok_or_else(|| {
            Error::verification(
                step::ROOT,
                format!("no {issuer} was supplied and the root for {product} pins none"),
            )
        })?,
    };
    let ark_meta = cert_meta(ark_der)?;
    let ask_meta = cert_meta(ask_der)?;
    check_issuer_role(vek.kind(), &ask_meta)?;

    let ark = sev_cert(ark_der, "ARK")?;
    let ask = sev_cert(ask_der, issuer)?;
    let vek_cert = sev_cert(vek.der(), vek_name)?;
    (&ark, &ark).verify().map_err(|e| {
        Error::verification(
            step::CHAIN,
            format!("ARK {:?} is not self-signed: {e}", ark_meta.subject_cn),
        )
    })?;
    (&ark, &ask).verify().map_err(|e| {
        Error::verification(
            step::CHAIN,
            format!(
                "{issuer} {:?} is not signed by ARK {:?}: {e}",
                ask_meta.subject_cn, ark_meta.subject_cn
            ),
        )
    })?;
    (&ask, &vek_cert).verify().map_err(|e| {
        Error::verification(
            step::CHAIN,
            format!(
                "{vek_name} is not signed by {issuer} {:?}: {e}",
                ask_meta.subject_cn
            ),
        )
    })?;
    // sev checks signatures only; validity periods are ours.
    check_validity("ARK", &ark_meta, now)?;
    check_validity(issuer, &ask_meta, now)?;
    check_validity(vek_name, vek.meta(), now)?;
    // AMD's CRL, when one was cached and given.
    if let Some(crl) = certs.crl.as_deref() {
        super::crl::check(
            crl,
            ark_der,
            &[(issuer, ask_der), (vek_name, vek.der())],
            now,
        )?;
    }

    let expires = ark_meta
        .not_after
        .min(ask_meta.not_after)
        .min(vek.not_after());
    Ok(VerifiedChain {
        anchor: clamp_anchor(root.anchor(), ark_der),
        vek,
        product,
        expires,
    })
}

/// Parses `report_bytes` (exactly 1184 bytes) and [`verify()`]s it.
pub fn verify_bytes(
    report_bytes: &[u8],
    certs: &SnpCertificates,
    roots: &SnpRoots,
    now: OffsetDateTime,
) -> Result<VerifiedEvidence> {
    verify(&SnpReport::parse(report_bytes)?, certs, roots, now)
}

/// The product of the evidence: the VEK names it (issuer CN or
/// `productName`), a version 3+ report names it by CPUID; when both do they
/// must agree.
pub fn product_of(report: &SnpReport, vek: &VekCertificate) -> Result<Product> {
    match (vek.product(), report.product_hint()) {
        (Some(from_cert), Some(from_report)) if from_cert != from_report => {
            Err(Error::verification(
                step::PRODUCT,
                format!(
                    "the {} names {from_cert} (issuer {:?}) but the report's CPUID names \
                     {from_report}",
                    vek.kind().name(),
                    vek.issuer_cn()
                ),
            ))
        }
        (Some(p), _) | (None, Some(p)) => Ok(p),
        (None, None) => Err(Error::verification(
            step::PRODUCT,
            format!(
                "cannot tell the AMD product: the {} issuer {:?} names none and the report \
                 (version {}) carries no known CPUID",
                vek.kind().name(),
                vek.issuer_cn(),
                report.version
            ),
        )),
    }
}

fn select_root<'r>(
    product: Product,
    supplied_ark: Option<&[u8]>,
    roots: &'r SnpRoots,
) -> Result<&'r SnpRoot> {
    let mut serving = roots.roots().iter().filter(|r| r.serves(product));
    let Some(ark) = supplied_ark else {
        return serving.next().ok_or_else(|| {
            Error::verification(
                step::ROOT,
                format!("no trusted ARK for {product} is configured"),
            )
        });
    };
    if let Some(root) = serving.clone().find(|r| r.ark_der() == ark) {
        return Ok(root);
    }
    let cn = cert_meta(ark)
        .map(|m| m.subject_cn)
        .unwrap_or_else(|_| "(unreadable)".into());
    let fingerprint = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(ark));
    let pins_production = serving.any(|r| r.anchor() == TrustAnchor::Production);
    Err(Error::verification(
        step::ROOT,
        if pins_production {
            format!(
                "ARK is not the pinned AMD root for {product} (supplied ARK: subject CN {cn:?}, \
                 SHA-256 {fingerprint})"
            )
        } else {
            format!(
                "ARK is not among the trusted roots for {product} (supplied ARK: subject CN \
                 {cn:?}, SHA-256 {fingerprint})"
            )
        },
    ))
}

fn issuer_name(kind: VekKind) -> &'static str {
    match kind {
        VekKind::Vcek => "ASK",
        VekKind::Vlek => "ASVK",
    }
}

/// A VCEK comes from an ASK, a VLEK from an ASVK; a mix-up would fail the
/// signature check anyway, but this names the actual mistake.
fn check_issuer_role(kind: VekKind, issuer: &CertMeta) -> Result<()> {
    let expected = match kind {
        VekKind::Vcek => CertRole::Ask,
        VekKind::Vlek => CertRole::Asvk,
    };
    match issuer.role() {
        Some(role) if role == expected => Ok(()),
        _ => Err(Error::verification(
            step::CHAIN,
            format!(
                "a {} is issued by an {} but the intermediate certificate is {:?}",
                kind.name(),
                issuer_name(kind),
                issuer.subject_cn
            ),
        )),
    }
}

fn sev_cert(der: &[u8], what: &str) -> Result<Certificate> {
    Certificate::from_der(der)
        .map_err(|e| Error::MalformedCollateral(format!("{what} certificate: {e}")))
}

fn check_validity(what: &str, meta: &CertMeta, now: OffsetDateTime) -> Result<()> {
    if now > meta.not_after {
        return Err(Error::StaleCollateral(format!(
            "{what} certificate {:?} expired {} ago (notAfter {})",
            meta.subject_cn,
            human_duration(now - meta.not_after),
            format_rfc3339(meta.not_after)
        )));
    }
    if now < meta.not_before {
        return Err(Error::StaleCollateral(format!(
            "{what} certificate {:?} is not valid yet: notBefore {} is {} from now",
            meta.subject_cn,
            format_rfc3339(meta.not_before),
            human_duration(meta.not_before - now)
        )));
    }
    Ok(())
}

fn check_report_signature(report: &SnpReport, vek: &VekCertificate) -> Result<()> {
    let fail = |detail: String| Error::verification(step::REPORT_SIGNATURE, detail);
    if report.sig_algo != SIG_ALGO_ECDSA_P384_SHA384 {
        return Err(fail(format!(
            "unsupported signature algorithm {} (only 1, ECDSA P-384 with SHA-384, exists)",
            report.sig_algo
        )));
    }
    if report.key_info.mask_chip_key() || report.signing_key() == SigningKey::None {
        return Err(fail(
            "the report is unsigned (MASK_CHIP_KEY set or SIGNING_KEY = none)".into(),
        ));
    }
    let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(vek.public_key_sec1()).map_err(|_| {
        fail(format!(
            "the {} public key is not a P-384 point",
            vek.kind().name()
        ))
    })?;
    let (r, s) = report.signature.p384_be().ok_or_else(|| {
        fail("signature r or s has non-zero bytes above the 48 a P-384 scalar has".into())
    })?;
    let mut rs = [0u8; 96];
    rs[..48].copy_from_slice(&r);
    rs[48..].copy_from_slice(&s);
    let sig = p384::ecdsa::Signature::from_slice(&rs)
        .map_err(|_| fail("signature r or s is zero or not below the P-384 order".into()))?;
    key.verify(&report.signed_bytes(), &sig).map_err(|_| {
        fail(format!(
            "the report's ECDSA P-384 signature does not verify with the {} key (the report \
             was altered, or another key signed it)",
            vek.kind().name()
        ))
    })
}

fn check_tcb(vek: &VekCertificate, reported: &TcbVersion) -> Result<()> {
    let t = vek.tcb();
    let mut components = vec![
        ("blSPL", t.bootloader, reported.bootloader()),
        ("teeSPL", t.tee, reported.tee()),
        ("snpSPL", t.snp, reported.snp()),
        ("ucodeSPL", t.microcode, reported.microcode()),
    ];
    if let Some(fmc) = reported.fmc() {
        components.insert(0, ("fmcSPL", t.fmc, fmc));
    }
    for (name, cert_value, report_value) in components {
        match cert_value {
            None => {
                return Err(Error::verification(
                    step::TCB,
                    format!("the {} has no {name} extension", vek.kind().name()),
                ))
            }
            Some(v) if v != report_value => {
                return Err(Error::verification(
                    step::TCB,
                    format!(
                        "{name} differs: the {} was issued for {name}={v} but the report's \
                         reported TCB has {name}={report_value} (a certificate for another TCB \
                         or chip)",
                        vek.kind().name()
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The orderings honest firmware keeps (SEV-SNP firmware ABI: the host may
/// set REPORTED_TCB below CURRENT_TCB "to ease continuity on TCB update",
/// never above; the firmware never runs below its COMMITTED_TCB, the
/// anti-rollback minimum): `reported ≤ current` and `committed ≤ current`,
/// component by component. REPORTED_TCB may be below COMMITTED_TCB (hosts
/// report a fleet-wide lowest level; Azure's do), so that order is not
/// required; the floor is applied to REPORTED_TCB, the only value the VEK
/// certifies (go-sev-guest's `validateTcb` makes the same choices).
fn check_tcb_order(report: &SnpReport, product: Product) -> Result<()> {
    let decode = |t: TcbVersion| TcbVersion::for_product(t.raw(), product);
    let (reported, current, committed) = (
        decode(report.reported_tcb),
        decode(report.current_tcb),
        decode(report.committed_tcb),
    );
    for (lower, lname, higher, hname) in [
        (reported, "REPORTED_TCB", current, "CURRENT_TCB"),
        (committed, "COMMITTED_TCB", current, "CURRENT_TCB"),
    ] {
        let parts = |t: &TcbVersion| {
            [
                ("fmc", t.fmc().unwrap_or(0)),
                ("bootloader", t.bootloader()),
                ("tee", t.tee()),
                ("snp", t.snp()),
                ("microcode", t.microcode()),
            ]
        };
        for ((name, lo), (_, hi)) in parts(&lower).into_iter().zip(parts(&higher)) {
            if lo > hi {
                return Err(Error::verification(
                    step::TCB,
                    format!(
                        "the report's {lname} {name} SPL {lo} is above its {hname} {hi}: no \
                         honest firmware writes that ({lname} {lower}, {hname} {higher})"
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn check_signing_key(report: &SnpReport, kind: VekKind) -> Result<()> {
    let expected = match kind {
        VekKind::Vcek => SigningKey::Vcek,
        VekKind::Vlek => SigningKey::Vlek,
    };
    if report.signing_key() != expected {
        return Err(Error::verification(
            step::SIGNING_KEY,
            format!(
                "the report says it was signed by {:?} but a {} verified it",
                report.signing_key(),
                kind.name()
            ),
        ));
    }
    Ok(())
}

/// Milan/Genoa hwIDs are the full 64-byte chip id; Turin's are its first 8
/// bytes with the rest of the chip id zero.
fn check_chip_id(report: &SnpReport, vek: &VekCertificate) -> Result<()> {
    let fail = |detail: String| Error::verification(step::CHIP_ID, detail);
    let hw_id = vek
        .hw_id()
        .ok_or_else(|| fail("the VCEK has no hwID extension".into()))?;
    if hw_id.is_empty() || hw_id.len() > report.chip_id.len() {
        return Err(fail(format!("the VCEK hwID is {} bytes long", hw_id.len())));
    }
    if report.chip_id.iter().all(|&b| b == 0) {
        return Err(fail(
            "the report's chip id is masked (all zero), so it cannot be bound to a VCEK".into(),
        ));
    }
    let (head, tail) = report.chip_id.split_at(hw_id.len());
    if head != hw_id || tail.iter().any(|&b| b != 0) {
        return Err(fail(format!(
            "the VCEK belongs to chip {} but the report comes from chip {}",
            hex::encode(hw_id),
            hex::encode(report.chip_id)
        )));
    }
    Ok(())
}
