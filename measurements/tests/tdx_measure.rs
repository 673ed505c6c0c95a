//! `tdx::measure` end to end on synthetic artifacts: wiring, JSON output,
//! and errors that name the file and what is wrong.

use std::path::{Path, PathBuf};

use chrysalis_measurements::tdx::{
    measure, replay_digests, sha384, PageAddOrder, Tdvf, TdxInputs, TdxMeasurements, VmConfig, Vmm,
};
use chrysalis_measurements::Error;
use sha2::{Digest, Sha256};

const FOOTER_GUID: &str = "de82b596b21ff745baeaa366c55a082d";
const TDX_OFFSET_GUID: &str = "35657ae44a989847865e4685a7bf8ec2";

/// A minimal TDVF image: BFV (2 pages, MR.EXTEND), CFV (1 page), TD_HOB,
/// TEMP_MEM, the descriptor, the GUIDed table and the reset vector area.
fn firmware() -> Vec<u8> {
    let mut img: Vec<u8> = (0..3 * 4096u32).map(|i| (i % 251) as u8).collect();
    let desc_at = img.len();
    let secs: [(u32, u32, u64, u64, u32, u32); 4] = [
        (0, 0x2000, 0xffc0_0000, 0x2000, 0, 1),
        (0x2000, 0x1000, 0xffbf_f000, 0x1000, 1, 0),
        (0, 0, 0x80_9000, 0x2000, 2, 0),
        (0, 0, 0x80_0000, 0x6000, 3, 0),
    ];
    img.extend_from_slice(b"TDVF");
    img.extend_from_slice(&(16 + 32 * secs.len() as u32).to_le_bytes());
    img.extend_from_slice(&1u32.to_le_bytes());
    img.extend_from_slice(&(secs.len() as u32).to_le_bytes());
    for s in secs {
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
    img.extend_from_slice(&[0; 32]);
    img
}

/// A bzImage-shaped PE32+: one section from 0x200 (setup header included)
/// to the end, Linux boot protocol 2.15 with XLF_CAN_BE_LOADED_ABOVE_4G.
fn bzimage() -> Vec<u8> {
    let mut k: Vec<u8> = (0..0x4000u32).map(|i| (i * 13 % 256) as u8).collect();
    k[..0x200].fill(0);
    k[..2].copy_from_slice(b"MZ");
    k[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
    k[0x80..0x84].copy_from_slice(b"PE\0\0");
    k[0x86..0x88].copy_from_slice(&1u16.to_le_bytes());
    k[0x94..0x96].copy_from_slice(&240u16.to_le_bytes());
    let opt = 0x98;
    k[opt..opt + 2].copy_from_slice(&0x20bu16.to_le_bytes());
    k[opt + 60..opt + 64].copy_from_slice(&0x200u32.to_le_bytes());
    k[opt + 108..opt + 112].copy_from_slice(&6u32.to_le_bytes());
    let sec = opt + 240;
    k[sec + 16..sec + 20].copy_from_slice(&0x3e00u32.to_le_bytes());
    k[sec + 20..sec + 24].copy_from_slice(&0x200u32.to_le_bytes());
    k[0x1f1] = 4;
    k[0x202..0x206].copy_from_slice(b"HdrS");
    k[0x206..0x208].copy_from_slice(&0x20fu16.to_le_bytes());
    k[0x211] = 0x01;
    k[0x236..0x238].copy_from_slice(&0x2u16.to_le_bytes());
    k
}

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::write(root.join("OVMF.fd"), firmware()).unwrap();
        std::fs::write(root.join("vmlinuz"), bzimage()).unwrap();
        std::fs::write(root.join("initrd"), b"initrd contents").unwrap();
        std::fs::write(root.join("config.json"), br#"{"node":"n1"}"#).unwrap();
        std::fs::create_dir(root.join("acpi")).unwrap();
        for (f, c) in [("table-loader", "L"), ("rsdp", "R"), ("tables", "T")] {
            std::fs::write(root.join("acpi").join(f), c).unwrap();
        }
        Setup { _dir: dir, root }
    }

    fn p(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn inputs(&self, memory: u64, qemu: &str) -> TdxInputs {
        let mut i = TdxInputs::new(
            self.p("OVMF.fd"),
            self.p("vmlinuz"),
            "console=ttyS0".into(),
            VmConfig {
                vcpus: 2,
                memory_bytes: memory,
                gpus: 0,
                vmm: Vmm {
                    name: "qemu".into(),
                    version: qemu.into(),
                },
            },
        );
        i.initrd = Some(self.p("initrd"));
        i
    }
}

fn sha256(p: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(p).unwrap()))
}

#[test]
fn measures_synthetic_artifacts() {
    let s = Setup::new();
    let mut inputs = s.inputs(2 << 30, "8.2.2");
    inputs.config = Some(s.p("config.json"));
    let m = measure(&inputs).unwrap();

    assert_eq!(m.model.page_add_order, PageAddOrder::TwoPass);
    assert!(m.model.page_add_order_source.contains("8.2.2"));
    assert!(m.model.vmm.contains("QEMU 8.2.2"));
    let fw = Tdvf::load(&s.p("OVMF.fd")).unwrap();
    assert_eq!(m.mrtd, fw.mrtd(PageAddOrder::TwoPass));
    assert_eq!(m.rtmr[0], None, "no ACPI tables, no RTMR0");
    assert!(m.model.rtmr0.contains("not computed"));

    // RTMR2 by hand: UTF-16LE command line with " initrd=initrd" and a NUL,
    // then the initrd.
    let mut cmd = Vec::new();
    for u in "console=ttyS0 initrd=initrd".encode_utf16().chain([0]) {
        cmd.extend_from_slice(&u.to_le_bytes());
    }
    assert_eq!(m.measured_cmdline, "console=ttyS0 initrd=initrd");
    assert_eq!(
        m.rtmr[2],
        Some(replay_digests([&sha384(&cmd), &sha384(b"initrd contents")]))
    );
    // RTMR3 by hand from the Chrysalis rule.
    let mut ev1 = b"chrysalis:config:".to_vec();
    ev1.extend_from_slice(&sha384(br#"{"node":"n1"}"#));
    assert_eq!(
        m.rtmr[3],
        Some(replay_digests([
            &sha384(&ev1),
            &sha384(b"chrysalis:boot-done:")
        ]))
    );
    assert!(m.rtmr[1].is_some());

    let roles: Vec<&str> = m.artifacts.iter().map(|a| a.role.as_str()).collect();
    assert_eq!(roles, ["firmware", "kernel", "initrd", "configuration"]);
    for a in &m.artifacts {
        assert_eq!(hex::encode(a.sha256), sha256(Path::new(&a.path)));
    }

    // JSON: lowercase hex, null for what was not computed, round trip.
    let json = serde_json::to_value(&m).unwrap();
    assert_eq!(json["mrtd"].as_str().unwrap(), hex::encode(m.mrtd));
    assert!(json["rtmr"][0].is_null());
    let r1 = json["rtmr"][1].as_str().unwrap();
    assert_eq!(r1.len(), 96);
    assert_eq!(r1, r1.to_lowercase());
    assert_eq!(json["model"]["page_add_order"], "two-pass");
    assert_eq!(json["vm"]["vmm"]["version"], "8.2.2");
    let back: TdxMeasurements = serde_json::from_value(json).unwrap();
    assert_eq!(back, m);
}

#[test]
fn rtmr0_only_with_acpi_tables_and_model_follows_qemu_version() {
    let s = Setup::new();
    let mut inputs = s.inputs(2 << 30, "9.2.1");
    inputs.acpi_tables = Some(s.p("acpi"));
    let m = measure(&inputs).unwrap();
    assert_eq!(m.model.page_add_order, PageAddOrder::SinglePass);
    assert!(m.rtmr[0].is_some());
    assert!(m.model.rtmr0.contains("acpi"));
    assert_eq!(
        m.events
            .iter()
            .filter(|e| e.register.rtmr_index() == Some(0))
            .count(),
        13
    );
    // Same ACPI tables given as JSON digests: same RTMR0.
    let acpi_json = serde_json::json!({
        "table_loader_sha384": hex::encode(sha384(b"L")),
        "rsdp_sha384": hex::encode(sha384(b"R")),
        "tables": hex::encode(b"T"),
    });
    std::fs::write(s.p("acpi.json"), acpi_json.to_string()).unwrap();
    inputs.acpi_tables = Some(s.p("acpi.json"));
    assert_eq!(measure(&inputs).unwrap().rtmr[0], m.rtmr[0]);
    // An override of the page-add order is recorded.
    inputs.page_add_order = Some(PageAddOrder::TwoPass);
    let o = measure(&inputs).unwrap();
    assert_eq!(o.model.page_add_order_source, "override");
    assert_ne!(o.mrtd, m.mrtd);
}

#[test]
fn memory_size_moves_rtmr0_and_rtmr1_as_qemu_does() {
    let s = Setup::new();
    let at = |mem: u64| {
        let mut i = s.inputs(mem, "9.2.1");
        i.acpi_tables = Some(s.p("acpi"));
        measure(&i).unwrap()
    };
    let (m1, m2, m3, m64) = (at(1 << 30), at(2 << 30), at(3 << 30), at(64 << 30));
    // RTMR1: the initrd address in the patched header follows memory below
    // the q35 split and is fixed above it (2 GiB below 4 GiB either way).
    assert_ne!(m1.rtmr[1], m2.rtmr[1]);
    assert_eq!(m2.rtmr[1], m3.rtmr[1]);
    assert_eq!(m3.rtmr[1], m64.rtmr[1]);
    // RTMR0: the TD HOB describes all of RAM.
    assert_ne!(m3.rtmr[0], m64.rtmr[0]);
    // MRTD does not depend on memory.
    assert_eq!(m1.mrtd, m64.mrtd);
    // Without an initrd: no initrd event, no " initrd=initrd".
    let mut i = s.inputs(2 << 30, "9.2.1");
    i.initrd = None;
    let n = measure(&i).unwrap();
    assert_eq!(n.measured_cmdline, "console=ttyS0");
    assert_eq!(
        n.events
            .iter()
            .filter(|e| e.register.rtmr_index() == Some(2))
            .count(),
        1
    );
    assert_ne!(n.rtmr[1], m2.rtmr[1]);
}

#[test]
fn errors_name_the_file_and_the_problem() {
    let s = Setup::new();
    let base = s.inputs(2 << 30, "8.2.2");

    let mut i = base.clone();
    i.kernel = s.p("missing-vmlinuz");
    let e = measure(&i).unwrap_err();
    assert!(matches!(e, Error::MissingFile { .. }));
    assert!(
        e.to_string().contains("kernel") && e.to_string().contains("missing-vmlinuz"),
        "{e}"
    );

    // A bzImage without a PE header (no EFI stub): TDVF could not start it.
    let mut not_pe = bzimage();
    not_pe[..2].copy_from_slice(b"XX");
    std::fs::write(s.p("nope"), &not_pe).unwrap();
    let mut i = base.clone();
    i.kernel = s.p("nope");
    let e = measure(&i).unwrap_err().to_string();
    assert!(e.contains("nope") && e.contains("not a PE image"), "{e}");

    // A PE that is not a Linux bzImage.
    let mut no_hdrs = bzimage();
    no_hdrs[0x202..0x206].copy_from_slice(b"xxxx");
    std::fs::write(s.p("efi-app"), &no_hdrs).unwrap();
    let mut i = base.clone();
    i.kernel = s.p("efi-app");
    let e = measure(&i).unwrap_err().to_string();
    assert!(
        e.contains("efi-app") && e.contains("not a Linux bzImage"),
        "{e}"
    );

    // Firmware without TDVF metadata.
    std::fs::write(s.p("plain.fd"), vec![0u8; 8192]).unwrap();
    let mut i = base.clone();
    i.firmware = s.p("plain.fd");
    let e = measure(&i).unwrap_err().to_string();
    assert!(
        e.contains("plain.fd") && e.contains("no TDVF metadata"),
        "{e}"
    );

    let mut i = base.clone();
    i.vm.vmm.name = "cloud-hypervisor".into();
    assert!(matches!(measure(&i), Err(Error::BadInput(_))));
    let mut i = base.clone();
    i.vm.vmm.version = "7.2.0".into();
    assert!(measure(&i).unwrap_err().to_string().contains("7.2.0"));

    let mut i = base.clone();
    i.acpi_tables = Some(s.p("acpi-missing"));
    assert!(measure(&i).unwrap_err().to_string().contains("ACPI"));
    std::fs::write(s.p("bad-acpi.json"), b"{\"rsdp\": \"00\"}").unwrap();
    i.acpi_tables = Some(s.p("bad-acpi.json"));
    let e = measure(&i).unwrap_err().to_string();
    assert!(
        e.contains("bad-acpi.json") && e.contains("table_loader"),
        "{e}"
    );

    // An initrd too large for the guest's low memory.
    let mut i = base.clone();
    i.vm.memory_bytes = 0x30000;
    let e = measure(&i).unwrap_err().to_string();
    assert!(e.contains("vmlinuz") || e.contains("OVMF.fd"), "{e}");
}

mod totality {
    use chrysalis_measurements::tdx::hob::qemu_td_hob;
    use chrysalis_measurements::tdx::tdvf::{SectionType, TdvfSection};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn td_hob_model_is_total(secs in proptest::collection::vec((any::<u64>(), any::<u64>(), 0u32..8), 0..6),
                                 memory in any::<u64>()) {
            let sections: Vec<TdvfSection> = secs
                .into_iter()
                .map(|(addr, size, ty)| TdvfSection {
                    data_offset: 0,
                    raw_data_size: 0,
                    memory_address: addr & !0xfff,
                    memory_data_size: size & !0xfff,
                    section_type: SectionType::from_raw(ty),
                    attributes: 0,
                })
                .collect();
            let _ = qemu_td_hob(&sections, memory & !0xfff);
        }
    }
}
