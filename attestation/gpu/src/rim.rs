//! NVIDIA reference integrity manifests (RIMs): ISO/IEC 19770-2 SWID tags
//! whose `Payload/Resource` elements carry the golden measurements of the
//! driver or the VBIOS, signed with an enveloped XML-DSig signature
//! (ECDSA P-384 / SHA-384, canonical XML 1.1) by a key whose certificate
//! chain (in `KeyInfo`) ends at the NVIDIA CoRIM signing root.
//!
//! One parser reads everything: the document is parsed once with `uppsala`
//! (the parser the `bergshamra-c14n` canonicalizer runs on), so the bytes
//! that are digested and the measurements that are compared come from the
//! same tree; there is no second parser to disagree with.
//!
//! Signature check ([`verify_rim`]):
//! 1. `SignedInfo` must say: C14N method one of the canonical XML 1.0/1.1 or
//!    exclusive URIs, signature method `ecdsa-sha384`, exactly one
//!    `Reference` with `URI=""`, transforms exactly `enveloped-signature`
//!    then a C14N method, digest method SHA-384.
//! 2. The document minus comments minus the `Signature` element is
//!    canonicalized and its SHA-384 must equal `DigestValue`.
//! 3. `SignedInfo` is canonicalized; `SignatureValue` (raw `r || s`,
//!    RFC 6931) must verify with the first `X509Certificate` of `KeyInfo`.
//! 4. The `KeyInfo` certificates (signer first) must chain to the pinned
//!    CoRIM root at the verification time.

use ::time::OffsetDateTime;
use base64::Engine;
use bergshamra_c14n::C14nMode;
use bergshamra_xml::nodeset::NodeSet;
use p384::ecdsa::signature::Verifier;
use p384::ecdsa::Signature;
use sha2::{Digest, Sha384};
use uppsala::{Document, NodeId};

use crate::certs::{self, CertChain, VerifiedChain};
use crate::error::{Error, Result};

/// ISO/IEC 19770-2:2015 SWID namespace.
pub const SWID_NS: &str = "http://standards.iso.org/iso/19770/-2/2015/schema.xsd";
/// XML-DSig namespace.
pub const DSIG_NS: &str = "http://www.w3.org/2000/09/xmldsig#";
/// The namespace NVIDIA uses for the `HashN` attributes (SHA-384 values).
pub const SHA384_NS: &str = "http://www.w3.org/2001/04/xmlenc#sha384";
/// XML-DSig signature method: ECDSA with SHA-384.
pub const ECDSA_SHA384: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384";
/// XML-DSig digest method: SHA-384.
pub const DIGEST_SHA384: &str = "http://www.w3.org/2001/04/xmldsig-more#sha384";
/// XML-DSig transform: enveloped signature.
pub const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
/// Upper bound on an accepted RIM (real ones are ~20 KiB).
pub const MAX_RIM_LEN: usize = 4 * 1024 * 1024;
/// Upper bound on the alternatives of one measurement.
pub const MAX_ALTERNATIVES: usize = 64;

/// One golden measurement of a RIM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoldenMeasurement {
    /// RIM index (0-based; the report's block index is this + 1).
    pub index: u16,
    /// `name` attribute (e.g. `Measurement_7`).
    pub name: String,
    /// Whether the measurement is to be compared (`active="True"`).
    pub active: bool,
    /// Digest size in bytes (48 for SHA-384).
    pub size: usize,
    /// Accepted values (`Hash0` … `HashN-1`).
    pub alternatives: Vec<Vec<u8>>,
}

/// A parsed (not yet verified) RIM.
#[derive(Debug, Clone)]
pub struct Rim {
    /// Where it came from (file name), for messages.
    pub name: String,
    /// `SoftwareIdentity/@tagId`.
    pub tag_id: String,
    /// `SoftwareIdentity/@name` (the chip, e.g. `GH100`).
    pub product: String,
    /// `Meta/@colloquialVersion`: driver version (`545.00`) or VBIOS
    /// version (`96.00.5E.00.01`).
    pub version: String,
    /// All `Resource type="Measurement"` entries in document order.
    pub measurements: Vec<GoldenMeasurement>,
    xml: String,
}

/// A RIM whose XML signature and signer chain verified. Only
/// [`verify_rim`] constructs it.
#[derive(Debug, Clone)]
pub struct VerifiedRim {
    rim: Rim,
    signer: VerifiedChain,
}

impl VerifiedRim {
    /// The RIM content.
    pub fn rim(&self) -> &Rim {
        &self.rim
    }
    /// The signer chain (signer first, CoRIM root last).
    pub fn signer(&self) -> &VerifiedChain {
        &self.signer
    }
}

fn bad(name: &str, reason: impl Into<String>) -> Error {
    Error::MalformedRim {
        name: name.to_string(),
        reason: reason.into(),
    }
}

fn sig_err(name: &str, reason: impl Into<String>) -> Error {
    Error::RimSignature {
        name: name.to_string(),
        reason: reason.into(),
    }
}

fn child_elems(doc: &Document<'_>, parent: NodeId, ns: &str, local: &str) -> Vec<NodeId> {
    doc.child_elements_by_name_ns(parent, ns, local)
}

fn one_child(
    doc: &Document<'_>,
    parent: NodeId,
    ns: &str,
    local: &str,
    name: &str,
) -> Result<NodeId> {
    let v = child_elems(doc, parent, ns, local);
    match v.as_slice() {
        [one] => Ok(*one),
        [] => Err(bad(name, format!("missing <{local}>"))),
        _ => Err(bad(
            name,
            format!("{} <{local}> elements, expected one", v.len()),
        )),
    }
}

fn attr<'d>(doc: &'d Document<'_>, id: NodeId, local: &str) -> Option<&'d str> {
    doc.element(id)?.get_attribute(local)
}

impl Rim {
    /// Parse a SWID tag RIM. `name` is only used in messages.
    pub fn parse(name: &str, bytes: &[u8]) -> Result<Rim> {
        if bytes.len() > MAX_RIM_LEN {
            return Err(bad(
                name,
                format!("{} bytes, over the {MAX_RIM_LEN}-byte limit", bytes.len()),
            ));
        }
        let xml = std::str::from_utf8(bytes).map_err(|e| bad(name, format!("not UTF-8: {e}")))?;
        // RIMs never carry a DTD; refusing one rules out entity tricks.
        if xml.contains("<!DOCTYPE") || xml.contains("<!ENTITY") {
            return Err(bad(
                name,
                "a DOCTYPE/ENTITY declaration is not allowed in a RIM",
            ));
        }
        let doc =
            uppsala::parse(xml).map_err(|e| bad(name, format!("not well-formed XML: {e}")))?;
        let root = doc
            .document_element()
            .ok_or_else(|| bad(name, "no document element"))?;
        let el = doc
            .element(root)
            .ok_or_else(|| bad(name, "no document element"))?;
        if !el.matches_name_ns(SWID_NS, "SoftwareIdentity") {
            return Err(bad(
                name,
                "document element is not a SWID <SoftwareIdentity>",
            ));
        }
        let tag_id = attr(&doc, root, "tagId")
            .ok_or_else(|| bad(name, "no tagId"))?
            .to_string();
        let product = attr(&doc, root, "name")
            .ok_or_else(|| bad(name, "no name"))?
            .to_string();
        let meta = one_child(&doc, root, SWID_NS, "Meta", name)?;
        let version = attr(&doc, meta, "colloquialVersion")
            .ok_or_else(|| bad(name, "<Meta> has no colloquialVersion"))?
            .to_string();
        let payload = one_child(&doc, root, SWID_NS, "Payload", name)?;
        let mut measurements: Vec<GoldenMeasurement> = Vec::new();
        for res in child_elems(&doc, payload, SWID_NS, "Resource") {
            if attr(&doc, res, "type") != Some("Measurement") {
                continue;
            }
            let m = parse_measurement(&doc, res, name)?;
            if measurements.iter().any(|x| x.index == m.index) {
                return Err(bad(
                    name,
                    format!("measurement index {} appears twice", m.index),
                ));
            }
            measurements.push(m);
        }
        if measurements.is_empty() {
            return Err(bad(name, "no <Resource type=\"Measurement\"> entries"));
        }
        Ok(Rim {
            name: name.to_string(),
            tag_id,
            product,
            version,
            measurements,
            xml: xml.to_string(),
        })
    }

    /// The active golden measurements.
    pub fn active(&self) -> impl Iterator<Item = &GoldenMeasurement> {
        self.measurements.iter().filter(|m| m.active)
    }

    /// The XML text the RIM was parsed from.
    pub fn xml(&self) -> &str {
        &self.xml
    }
}

fn parse_measurement(doc: &Document<'_>, res: NodeId, name: &str) -> Result<GoldenMeasurement> {
    let get =
        |k: &str| attr(doc, res, k).ok_or_else(|| bad(name, format!("measurement without {k}")));
    let index: u16 = get("index")?
        .parse()
        .map_err(|_| bad(name, "measurement index is not a number 0..65535"))?;
    let active = match get("active")? {
        "True" | "true" => true,
        "False" | "false" => false,
        other => return Err(bad(name, format!("measurement {index}: active={other:?}"))),
    };
    let size: usize = get("size")?
        .parse()
        .map_err(|_| bad(name, format!("measurement {index}: size is not a number")))?;
    let n: usize = get("alternatives")?.parse().map_err(|_| {
        bad(
            name,
            format!("measurement {index}: alternatives is not a number"),
        )
    })?;
    if n == 0 || n > MAX_ALTERNATIVES {
        return Err(bad(
            name,
            format!("measurement {index}: {n} alternatives (1..={MAX_ALTERNATIVES})"),
        ));
    }
    let el = doc
        .element(res)
        .ok_or_else(|| bad(name, "resource is not an element"))?;
    let mut alternatives = Vec::with_capacity(n);
    for i in 0..n {
        let key = format!("Hash{i}");
        let v = el
            .get_attribute_ns(SHA384_NS, &key)
            .ok_or_else(|| bad(name, format!("measurement {index}: missing {key}")))?;
        let v = hex::decode(v)
            .map_err(|_| bad(name, format!("measurement {index}: {key} is not hex")))?;
        if v.len() != size {
            return Err(bad(
                name,
                format!(
                    "measurement {index}: {key} is {} bytes, size says {size}",
                    v.len()
                ),
            ));
        }
        alternatives.push(v);
    }
    Ok(GoldenMeasurement {
        index,
        name: attr(doc, res, "name").unwrap_or_default().to_string(),
        active,
        size,
        alternatives,
    })
}

fn c14n(doc: &Document<'_>, mode: C14nMode, set: &NodeSet, name: &str) -> Result<Vec<u8>> {
    bergshamra_c14n::canonicalize_doc::<&str>(doc, mode, Some(set), &[])
        .map_err(|e| sig_err(name, format!("canonicalization failed: {e}")))
}

fn algorithm<'d>(doc: &'d Document<'_>, id: NodeId, name: &str) -> Result<&'d str> {
    attr(doc, id, "Algorithm").ok_or_else(|| bad(name, "element without Algorithm"))
}

/// Verify the RIM's enveloped XML signature and its signer chain to
/// `root_der` (normally [`certs::NVIDIA_RIM_ROOT_DER`]) at `at`.
pub fn verify_rim(rim: &Rim, root_der: &[u8], at: OffsetDateTime) -> Result<VerifiedRim> {
    let name = rim.name.as_str();
    let doc =
        uppsala::parse(&rim.xml).map_err(|e| bad(name, format!("not well-formed XML: {e}")))?;
    let root = doc
        .document_element()
        .ok_or_else(|| bad(name, "no document element"))?;
    let sigs = child_elems(&doc, root, DSIG_NS, "Signature");
    let sig = match sigs.as_slice() {
        [one] => *one,
        [] => return Err(sig_err(name, "no enveloped <ds:Signature>")),
        _ => return Err(sig_err(name, "more than one <ds:Signature>")),
    };
    let signed_info = one_child(&doc, sig, DSIG_NS, "SignedInfo", name)?;
    let c14n_method = one_child(&doc, signed_info, DSIG_NS, "CanonicalizationMethod", name)?;
    let si_mode = C14nMode::from_uri(algorithm(&doc, c14n_method, name)?)
        .filter(|m| !m.with_comments())
        .ok_or_else(|| sig_err(name, "unsupported CanonicalizationMethod"))?;
    let sig_method = one_child(&doc, signed_info, DSIG_NS, "SignatureMethod", name)?;
    if algorithm(&doc, sig_method, name)? != ECDSA_SHA384 {
        return Err(sig_err(name, "SignatureMethod is not ecdsa-sha384"));
    }
    let reference = one_child(&doc, signed_info, DSIG_NS, "Reference", name)?;
    if attr(&doc, reference, "URI") != Some("") {
        return Err(sig_err(
            name,
            "the Reference must be URI=\"\" (the whole document)",
        ));
    }
    let transforms = one_child(&doc, reference, DSIG_NS, "Transforms", name)?;
    let t = child_elems(&doc, transforms, DSIG_NS, "Transform");
    let ref_mode =
        match t.as_slice() {
            [env, c] if algorithm(&doc, *env, name)? == ENVELOPED => {
                C14nMode::from_uri(algorithm(&doc, *c, name)?)
                    .filter(|m| !m.with_comments())
                    .ok_or_else(|| sig_err(name, "unsupported Reference canonicalization"))?
            }
            _ => return Err(sig_err(
                name,
                "Reference transforms must be exactly enveloped-signature then a canonicalization",
            )),
        };
    let digest_method = one_child(&doc, reference, DSIG_NS, "DigestMethod", name)?;
    if algorithm(&doc, digest_method, name)? != DIGEST_SHA384 {
        return Err(sig_err(name, "DigestMethod is not SHA-384"));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let digest_value = one_child(&doc, reference, DSIG_NS, "DigestValue", name)?;
    let expected_digest = b64
        .decode(strip_ws(&doc.text_content_deep(digest_value)))
        .map_err(|_| bad(name, "DigestValue is not base64"))?;

    // Reference: the document without comments, minus the Signature subtree.
    let whole = NodeSet::all_without_comments(&doc);
    let referenced = whole.subtract(&NodeSet::tree_with_comments(sig, &doc));
    let digest = Sha384::digest(c14n(&doc, ref_mode, &referenced, name)?);
    if digest[..] != expected_digest[..] {
        return Err(sig_err(
            name,
            "document digest does not match DigestValue (the RIM was modified)",
        ));
    }

    // Signer chain from KeyInfo.
    let key_info = one_child(&doc, sig, DSIG_NS, "KeyInfo", name)?;
    let x509_data = one_child(&doc, key_info, DSIG_NS, "X509Data", name)?;
    let mut ders = Vec::new();
    for c in child_elems(&doc, x509_data, DSIG_NS, "X509Certificate") {
        ders.push(
            b64.decode(strip_ws(&doc.text_content_deep(c)))
                .map_err(|_| bad(name, "X509Certificate is not base64"))?,
        );
    }
    let chain = CertChain::from_ders(ders)
        .map_err(|e| sig_err(name, format!("signer certificates: {e}")))?;
    let signer = certs::verify_chain(&chain, root_der, at)
        .map_err(|e| sig_err(name, format!("signer chain: {e}")))?;

    // SignedInfo signature.
    let si_set = NodeSet::tree_without_comments(signed_info, &doc);
    let si_bytes = c14n(&doc, si_mode, &si_set, name)?;
    let sig_value = one_child(&doc, sig, DSIG_NS, "SignatureValue", name)?;
    let raw = b64
        .decode(strip_ws(&doc.text_content_deep(sig_value)))
        .map_err(|_| bad(name, "SignatureValue is not base64"))?;
    let signature = Signature::from_slice(&raw).map_err(|_| {
        sig_err(
            name,
            format!(
                "SignatureValue is {} bytes, not a P-384 r||s pair",
                raw.len()
            ),
        )
    })?;
    signer
        .leaf_key()
        .verify(&si_bytes, &signature)
        .map_err(|_| {
            sig_err(
                name,
                "SignatureValue does not verify over the canonical SignedInfo",
            )
        })?;
    Ok(VerifiedRim {
        rim: rim.clone(),
        signer,
    })
}

fn strip_ws(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = Rim::parse("fuzz", &bytes);
        }

        #[test]
        fn parse_never_panics_on_xml_like_text(s in "<[a-zA-Z:= \"/>0-9]{0,400}") {
            if let Ok(r) = Rim::parse("fuzz", s.as_bytes()) {
                let _ = verify_rim(&r, crate::certs::NVIDIA_RIM_ROOT_DER, OffsetDateTime::UNIX_EPOCH);
            }
        }
    }

    #[test]
    fn doctype_is_refused() {
        let x = b"<!DOCTYPE a [<!ENTITY e \"x\">]><SoftwareIdentity xmlns=\"http://standards.iso.org/iso/19770/-2/2015/schema.xsd\"/>";
        let e = Rim::parse("dtd.xml", x).unwrap_err();
        assert!(e.to_string().contains("DOCTYPE"), "{e}");
    }

    #[test]
    fn not_a_swid_tag_is_named() {
        let e = Rim::parse("x.xml", b"<a/>").unwrap_err();
        assert!(e.to_string().contains("SoftwareIdentity"), "{e}");
    }
}
