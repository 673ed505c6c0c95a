//! MRTD from TDVF images: a synthetic image whose expected hash stream is
//! spelled out here from the TDX module's definitions, malformed images,
//! and (when available) a real OVMF build.

use std::path::PathBuf;

use chrysalis_measurements::tdx::tdvf::{
    parse_metadata, SectionType, ATTR_MR_EXTEND, ATTR_PAGE_AUG,
};
use chrysalis_measurements::tdx::{sha384, PageAddOrder, Tdvf};
use chrysalis_measurements::Error;
use proptest::prelude::*;
use sha2::{Digest, Sha384};

const FOOTER_GUID: &str = "de82b596b21ff745baeaa366c55a082d";
const TDX_OFFSET_GUID: &str = "35657ae44a989847865e4685a7bf8ec2";

/// (data offset, raw size, GPA, memory size, type, attributes)
type Sec = (u32, u32, u64, u64, u32, u32);

/// Builds a firmware image: `data` at the start, the TDVF descriptor after
/// it, the OVMF GUIDed table (TDX metadata offset entry + footer) and 32
/// bytes of "reset vector" at the end.
fn image(data: &[u8], sections: &[Sec]) -> Vec<u8> {
    let mut img = data.to_vec();
    let desc_at = img.len();
    img.extend_from_slice(b"TDVF");
    img.extend_from_slice(&(16 + 32 * sections.len() as u32).to_le_bytes());
    img.extend_from_slice(&1u32.to_le_bytes());
    img.extend_from_slice(&(sections.len() as u32).to_le_bytes());
    for s in sections {
        img.extend_from_slice(&s.0.to_le_bytes());
        img.extend_from_slice(&s.1.to_le_bytes());
        img.extend_from_slice(&s.2.to_le_bytes());
        img.extend_from_slice(&s.3.to_le_bytes());
        img.extend_from_slice(&s.4.to_le_bytes());
        img.extend_from_slice(&s.5.to_le_bytes());
    }
    let total = img.len() + 22 + 18 + 32;
    img.extend_from_slice(&((total - desc_at) as u32).to_le_bytes());
    img.extend_from_slice(&22u16.to_le_bytes());
    img.extend_from_slice(&hex::decode(TDX_OFFSET_GUID).unwrap());
    img.extend_from_slice(&40u16.to_le_bytes());
    img.extend_from_slice(&hex::decode(FOOTER_GUID).unwrap());
    img.extend_from_slice(&[0xf4; 32]);
    assert_eq!(img.len(), total);
    img
}

fn firmware_data() -> Vec<u8> {
    // Two pages of "code" (BFV) and one of "variables" (CFV).
    (0..3 * 4096u32).map(|i| (i * 7 + i / 4096) as u8).collect()
}

fn sections(extra: Option<Sec>) -> Vec<Sec> {
    let mut s = vec![
        (0, 0x2000, 0xffc0_0000, 0x2000, 0, ATTR_MR_EXTEND),
        (0x2000, 0x1000, 0xffbf_f000, 0x1000, 1, 0),
        (0, 0, 0x80_9000, 0x2000, 2, 0),
        (0, 0, 0x80_0000, 0x6000, 3, 0),
    ];
    s.extend(extra);
    s
}

/// The 128-byte block TDH.MEM.PAGE.ADD / TDH.MR.EXTEND hash into MRTD:
/// operation name zero-padded to 16 bytes, GPA as u64 LE, zeros.
fn block(op: &[u8], gpa: u64) -> [u8; 128] {
    let mut b = [0u8; 128];
    b[..op.len()].copy_from_slice(op);
    b[16..24].copy_from_slice(&gpa.to_le_bytes());
    b
}

fn add(h: &mut Sha384, gpa: u64) {
    h.update(block(b"MEM.PAGE.ADD", gpa));
}

fn extend_page(h: &mut Sha384, gpa: u64, page: &[u8]) {
    for (i, chunk) in page.chunks(256).enumerate() {
        h.update(block(b"MR.EXTEND", gpa + 256 * i as u64));
        h.update(chunk);
    }
}

/// The expected stream for `sections(None)`, written out by hand.
fn expected(order: PageAddOrder) -> [u8; 48] {
    let data = firmware_data();
    let mut h = Sha384::new();
    match order {
        PageAddOrder::SinglePass => {
            add(&mut h, 0xffc0_0000);
            extend_page(&mut h, 0xffc0_0000, &data[..4096]);
            add(&mut h, 0xffc0_1000);
            extend_page(&mut h, 0xffc0_1000, &data[4096..8192]);
        }
        PageAddOrder::TwoPass => {
            add(&mut h, 0xffc0_0000);
            add(&mut h, 0xffc0_1000);
            extend_page(&mut h, 0xffc0_0000, &data[..4096]);
            extend_page(&mut h, 0xffc0_1000, &data[4096..8192]);
        }
    }
    // CFV: added, not extended. TD_HOB and TEMP_MEM: added.
    add(&mut h, 0xffbf_f000);
    add(&mut h, 0x80_9000);
    add(&mut h, 0x80_a000);
    for p in 0..6 {
        add(&mut h, 0x80_0000 + p * 4096);
    }
    h.finalize().into()
}

#[test]
fn synthetic_image_mrtd_follows_the_page_add_and_extend_stream() {
    let fw = Tdvf::from_bytes("synthetic.fd", image(&firmware_data(), &sections(None))).unwrap();
    let md = fw.metadata();
    assert_eq!(md.sections.len(), 4);
    assert_eq!(md.sections[0].section_type, SectionType::Bfv);
    assert!(md.sections[0].mr_extend());
    for order in [PageAddOrder::SinglePass, PageAddOrder::TwoPass] {
        assert_eq!(
            hex::encode(fw.mrtd(order)),
            hex::encode(expected(order)),
            "{order:?}"
        );
    }
    assert_ne!(
        fw.mrtd(PageAddOrder::SinglePass),
        fw.mrtd(PageAddOrder::TwoPass)
    );
    assert_eq!(
        fw.cfv_digest().unwrap(),
        sha384(&firmware_data()[0x2000..0x3000])
    );
}

#[test]
fn page_aug_sections_are_not_measured_and_only_mr_extend_content_counts() {
    let base = Tdvf::from_bytes("a", image(&firmware_data(), &sections(None))).unwrap();
    let aug = Tdvf::from_bytes(
        "b",
        image(
            &firmware_data(),
            &sections(Some((0, 0, 0x90_0000, 0x4000, 3, ATTR_PAGE_AUG))),
        ),
    )
    .unwrap();
    let plain = Tdvf::from_bytes(
        "c",
        image(
            &firmware_data(),
            &sections(Some((0, 0, 0x90_0000, 0x4000, 3, 0))),
        ),
    )
    .unwrap();
    for order in [PageAddOrder::SinglePass, PageAddOrder::TwoPass] {
        assert_eq!(aug.mrtd(order), base.mrtd(order));
        assert_ne!(plain.mrtd(order), base.mrtd(order));
    }
    // A byte of the MR.EXTEND volume changes MRTD; a byte of the CFV (added
    // but not extended) does not, though it changes the CFV digest.
    let mut code = firmware_data();
    code[100] ^= 1;
    let c = Tdvf::from_bytes("d", image(&code, &sections(None))).unwrap();
    assert_ne!(
        c.mrtd(PageAddOrder::TwoPass),
        base.mrtd(PageAddOrder::TwoPass)
    );
    let mut vars = firmware_data();
    vars[0x2000 + 5] ^= 1;
    let v = Tdvf::from_bytes("e", image(&vars, &sections(None))).unwrap();
    assert_eq!(
        v.mrtd(PageAddOrder::TwoPass),
        base.mrtd(PageAddOrder::TwoPass)
    );
    assert_ne!(v.cfv_digest().unwrap(), base.cfv_digest().unwrap());
}

fn err(bytes: Vec<u8>) -> String {
    match Tdvf::from_bytes("bad.fd", bytes) {
        Err(e @ Error::BadArtifact { .. }) => e.to_string(),
        Err(e) => panic!("expected BadArtifact, got {e:?}"),
        Ok(fw) => panic!("expected an error, parsed {:?}", fw.metadata()),
    }
}

#[test]
fn bad_firmware_errors_name_the_file_and_what_is_missing() {
    let e = err(vec![0x5a; 64 * 1024]);
    assert!(
        e.starts_with("bad.fd: firmware has no TDVF metadata"),
        "{e}"
    );

    // A GUIDed table with only a footer: no TDX entry.
    let mut img = vec![0u8; 4096];
    img.extend_from_slice(&18u16.to_le_bytes());
    img.extend_from_slice(&hex::decode(FOOTER_GUID).unwrap());
    img.extend_from_slice(&[0; 32]);
    let e = err(img.clone());
    assert!(
        e.contains("no TDVF metadata") && e.contains("not a TDX build"),
        "{e}"
    );

    // Truncated table: the footer says the table holds 10 bytes besides
    // itself, too few for any entry.
    let good = image(&firmware_data(), &sections(None));
    let footer_len_at = good.len() - 32 - 18;
    let mut t = good.clone();
    t[footer_len_at..footer_len_at + 2].copy_from_slice(&28u16.to_le_bytes());
    let e = err(t);
    assert!(e.contains("table truncated"), "{e}");

    // An entry whose length runs past the start of the table.
    let mut t = good.clone();
    let entry_len_at = footer_len_at - 18;
    t[entry_len_at..entry_len_at + 2].copy_from_slice(&30u16.to_le_bytes());
    assert!(err(t).contains("invalid length 30"));

    // Table longer than the image.
    let mut t = good.clone();
    t[footer_len_at..footer_len_at + 2].copy_from_slice(&0xffffu16.to_le_bytes());
    assert!(err(t).contains("table length"));

    // Metadata offset pointing outside the image.
    let mut t = good.clone();
    let off_at = good.len() - 32 - 18 - 22;
    t[off_at..off_at + 4].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    assert!(err(t).contains("outside"));

    // Wrong descriptor signature.
    let mut t = good.clone();
    t[3 * 4096] = b'X';
    assert!(err(t).contains("signature"));

    // MR.EXTEND section reaching past the image.
    let bad = vec![(0, 0x2000, 0xffc0_0000, 0x100_0000, 0, ATTR_MR_EXTEND)];
    assert!(err(image(&firmware_data(), &bad)).contains("MR.EXTEND"));

    // MR.EXTEND with PAGE.AUG is contradictory.
    let bad = vec![(
        0,
        0x1000,
        0xffc0_0000,
        0x1000,
        0,
        ATTR_MR_EXTEND | ATTR_PAGE_AUG,
    )];
    assert!(err(image(&firmware_data(), &bad)).contains("PAGE.AUG"));

    // Unaligned GPA.
    let bad = vec![(0, 0, 0x80_0800, 0x1000, 3, 0)];
    assert!(err(image(&firmware_data(), &bad)).contains("aligned"));

    // A missing file is MissingFile, naming the role.
    let e = Tdvf::load(std::path::Path::new("/nonexistent/OVMF.fd")).unwrap_err();
    assert!(matches!(e, Error::MissingFile { .. }), "{e}");
    assert!(e.to_string().contains("firmware"), "{e}");
}

#[test]
fn cfv_is_required_for_rtmr0() {
    let s = vec![
        (0, 0x2000, 0xffc0_0000, 0x2000, 0, ATTR_MR_EXTEND),
        (0, 0, 0x80_9000, 0x1000, 2, 0),
    ];
    let fw = Tdvf::from_bytes("nocfv.fd", image(&firmware_data(), &s)).unwrap();
    let e = fw.cfv_digest().unwrap_err().to_string();
    assert!(e.contains("nocfv.fd") && e.contains("CFV"), "{e}");
}

/// A real TDVF: `$CHRYSALIS_TEST_TDVF`, else `/usr/share/ovmf/OVMF.fd`.
/// There is no published MRTD for these files: the test parses, reports,
/// and checks the facts that can be checked independently.
#[test]
fn real_ovmf_if_available() {
    let path = std::env::var_os("CHRYSALIS_TEST_TDVF")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/ovmf/OVMF.fd"));
    if !path.exists() {
        println!("skipping: no TDVF image (set CHRYSALIS_TEST_TDVF=path/to/OVMF.fd)");
        return;
    }
    let fw = match Tdvf::load(&path) {
        Ok(fw) => fw,
        Err(e) => {
            println!("skipping: {e}");
            return;
        }
    };
    let (sha, _) = chrysalis_measurements::tdx::sha256_file(&path).unwrap();
    let single = fw.mrtd(PageAddOrder::SinglePass);
    let two = fw.mrtd(PageAddOrder::TwoPass);
    println!("{}: sha256 {}", path.display(), hex::encode(sha));
    for s in &fw.metadata().sections {
        println!("  {s:?}");
    }
    println!("  MRTD single-pass {}", hex::encode(single));
    println!("  MRTD two-pass    {}", hex::encode(two));
    println!(
        "  CFV sha384       {}",
        hex::encode(fw.cfv_digest().unwrap())
    );
    assert_ne!(single, two);
    assert!(fw.td_hob(2 << 30).is_ok());
    // Debian trixie ovmf 2025.02-8+deb13u1: its empty variable store is the
    // one dstack's images measure; the CFV event digest in dstack's real log
    // must equal this file's CFV digest.
    if hex::encode(sha) == "14954040cc754ade0c625ac3470ea46d4c14318b5b1396de4ef77090203d76db" {
        // Differential: dstack-mr (Dstack-TEE/dstack@312dc605, `dstack-mr
        // tdx-measurement-cbor`) computed these for the same file.
        assert_eq!(
            hex::encode(single),
            "bdc6fb145880f06f30c8b346b8dce2a99d9351b56892df22f80fcf6574caa9f9c31df8e8576d53b4d0cd1c3f28910e11"
        );
        assert_eq!(
            hex::encode(two),
            "456f07902150d008bb913c3e1e84e9297f735a6c83cd2a957a1f0a8bbedb06df188e3837ae48d32c73d473d097dc0db2"
        );
        let log = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/vectors/tdx/dstack_verifier_quote-report.json");
        if let Ok(text) = std::fs::read(log) {
            let log = chrysalis_measurements::tdx::eventlog::EventLog::parse(&text, "log").unwrap();
            assert_eq!(log.events[1].event_type, 0x8000_000a);
            assert_eq!(fw.cfv_digest().unwrap(), log.events[1].digest);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn metadata_parser_is_total(pos in 0usize..13_000, val in any::<u8>(), cut in 0usize..13_000) {
        let mut img = image(&firmware_data(), &sections(None));
        if pos < img.len() { img[pos] = val; }
        img.truncate(cut.max(1));
        if let Ok(md) = parse_metadata(&img) {
            let fw = Tdvf::from_bytes("p", img).unwrap();
            prop_assert_eq!(&md, fw.metadata());
            let _ = fw.mrtd(PageAddOrder::TwoPass);
            let _ = fw.cfv_digest();
            let _ = fw.td_hob(1 << 30);
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = parse_metadata(&bytes);
    }
}
