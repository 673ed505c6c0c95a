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

/// A gpu image's boot gate adds the `gpu` event between `config` and
/// `boot-done`: RTMR3 then follows the predicted GPU state (count, driver),
/// and nothing else moves.
#[test]
fn gpu_event_enters_rtmr3_between_config_and_boot_done() {
    use chrysalis_attestation::runtime_events::{rtmr3_expected_with_gpu, GpuEventState};
    let s = Setup::new();
    let mut inputs = s.inputs(2 << 30, "8.2.2");
    inputs.config = Some(s.p("config.json"));
    let cpu = measure(&inputs).unwrap();
    let state = GpuEventState::expected(1, "550.163.01");
    inputs.gpu_event = Some(state.clone());
    let gpu = measure(&inputs).unwrap();
    assert_eq!(gpu.mrtd, cpu.mrtd);
    assert_eq!(gpu.rtmr[..3], cpu.rtmr[..3]);
    assert_ne!(gpu.rtmr[3], cpu.rtmr[3]);
    let cfg = std::fs::read(s.p("config.json")).unwrap();
    assert_eq!(
        gpu.rtmr[3],
        Some(rtmr3_expected_with_gpu(&cfg, Some(&state)))
    );
    assert!(
        gpu.model.rtmr3.contains("\"driver\":\"550.163.01\""),
        "{}",
        gpu.model.rtmr3
    );
    // Another driver or GPU count is another register.
    inputs.gpu_event = Some(GpuEventState::expected(2, "550.163.01"));
    assert_ne!(measure(&inputs).unwrap().rtmr[3], gpu.rtmr[3]);
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

// ------------------------------------------------------------------
// A malicious host on this side: whatever it changes among the RTMR0
// inputs changes the predicted RTMR0 (the model must not be blind to it).

/// A QEMU-shaped tables blob: FACS, DSDT with some AML-like bytes, then
/// zero padding to 128 KiB.
fn tables_blob() -> Vec<u8> {
    let mut t = vec![0u8; 64];
    t[..4].copy_from_slice(b"FACS");
    t[4..8].copy_from_slice(&64u32.to_le_bytes());
    let mut dsdt: Vec<u8> = (0..300u32).map(|i| (i * 7 % 256) as u8).collect();
    dsdt[..4].copy_from_slice(b"DSDT");
    dsdt[4..8].copy_from_slice(&300u32.to_le_bytes());
    t.extend(dsdt);
    t.resize(128 << 10, 0);
    t
}

fn with_tables(inputs: &mut TdxInputs, tables: &[u8]) {
    use chrysalis_measurements::tdx::rtmr::AcpiTables;
    use chrysalis_measurements::tdx::GeneratedAcpi;
    let t = AcpiTables {
        table_loader: b"loader".to_vec(),
        rsdp: b"RSD PTR ".to_vec(),
        tables: tables.to_vec(),
    };
    inputs.acpi_generated = Some(GeneratedAcpi {
        digests: t.digests(),
        source: "test".into(),
    });
}

fn rtmr0(inputs: &TdxInputs) -> [u8; 48] {
    measure(inputs).unwrap().rtmr[0].expect("RTMR0 computed")
}

#[test]
fn malicious_host_one_dsdt_byte_changes_rtmr0() {
    use chrysalis_measurements::tdx::acpi::find_table;
    let s = Setup::new();
    let mut i = s.inputs(2 << 30, "11.1.3");
    let blob = tables_blob();
    with_tables(&mut i, &blob);
    let base = rtmr0(&i);
    let dsdt = find_table(&blob, b"DSDT").unwrap();
    let mut evil = blob.clone();
    evil[dsdt.offset + dsdt.length - 1] ^= 1; // last AML byte of the DSDT
    with_tables(&mut i, &evil);
    assert_ne!(rtmr0(&i), base);
    // Generated tables are recorded as such in the model.
    assert!(measure(&i).unwrap().model.rtmr0.contains("test"));
}

#[test]
fn malicious_host_other_memory_size_changes_rtmr0_even_with_the_same_acpi_tables() {
    let s = Setup::new();
    let at = |mem: u64| {
        let mut i = s.inputs(mem, "11.1.3");
        with_tables(&mut i, &tables_blob());
        rtmr0(&i)
    };
    assert_ne!(at(64 << 30), at(65 << 30));
}

#[test]
fn malicious_host_injected_uefi_variable_changes_rtmr0() {
    use chrysalis_measurements::tdx::rtmr::{fv_file_load_option, OVMF_DXEFV_GUID};
    let s = Setup::new();
    let mut i = s.inputs(2 << 30, "11.1.3");
    with_tables(&mut i, &tables_blob());
    let base = rtmr0(&i);

    // 1. A variable written into the firmware's variable store (the CFV:
    //    not in MRTD, measured into RTMR0 as a whole), e.g. SystemdOptions.
    let fw = std::fs::read(s.p("OVMF.fd")).unwrap();
    let tdvf = Tdvf::load(&s.p("OVMF.fd")).unwrap();
    let cfv = tdvf
        .metadata()
        .sections
        .iter()
        .find(|x| x.section_type == chrysalis_measurements::tdx::metadata::SectionType::Cfv)
        .unwrap()
        .clone();
    let mut evil = fw.clone();
    let var: Vec<u8> = "SystemdOptions\0systemd.mount-extra=/dev/vdc:/usr"
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    let at = cfv.data_offset as usize;
    evil[at..at + var.len()].copy_from_slice(&var);
    std::fs::write(s.p("evil.fd"), &evil).unwrap();
    let mut e = s.inputs(2 << 30, "11.1.3");
    e.firmware = s.p("evil.fd");
    with_tables(&mut e, &tables_blob());
    let m_evil = measure(&e).unwrap();
    assert_ne!(m_evil.rtmr[0].unwrap(), base);
    assert_eq!(
        m_evil.mrtd,
        measure(&i).unwrap().mrtd,
        "the variable store is not in MRTD: only RTMR0 catches it"
    );

    // 2. An extra boot option (Boot0001) and a BootOrder that runs it.
    let mut b = i.clone();
    b.boot.boot_order.push(1);
    b.boot.options.push((
        1,
        fv_file_load_option(1, "evil", &OVMF_DXEFV_GUID, &OVMF_DXEFV_GUID),
    ));
    assert_ne!(rtmr0(&b), base);

    // 3. Secure Boot variables with content.
    let mut sb = i.clone();
    sb.secure_boot.db = vec![1, 2, 3];
    assert_ne!(rtmr0(&sb), base);
}
