//! The event sequences that produce RTMR0–RTMR3 for a QEMU + TDVF direct
//! kernel boot, and the Chrysalis RTMR3 rule.
//!
//! Each function returns the predicted events ([`MeasuredEvent`]) so that a
//! mismatch can be located with [`super::eventlog::compare`]; replay them
//! with [`super::replay_events`] or [`replay`].
//!
//! The firmware events follow TDVF (OVMF) releases before 2025.05 (the
//! "pre202505" variant dstack names), checked against real dstack event
//! logs: both the values computed here from first principles (TD HOB, EFI
//! variables, boot option, EFI actions, separators) and the order.

use std::path::Path;

use serde::{Deserialize, Serialize};

use chrysalis_attestation::runtime_events;
pub use chrysalis_attestation::runtime_events::{
    canonical_json, chrysalis_event_digest, rtmr3_expected, CHRYSALIS_EVENT_TYPE,
    RTMR3_BOOT_DONE_EVENT, RTMR3_CONFIG_EVENT, RTMR3_GPU_EVENT,
};

use super::digest::{parse_hex48, replay_digests, sha384, Digest384};
use super::event::{MeasuredEvent, Register};
use super::eventlog::event_type as ev;
use super::files::{read_file, read_file_limited};
use super::kernel::{qemu_patch, KernelLoad};
use super::pe;
use crate::error::{Error, Result};
use crate::guid::{Guid, EFI_GLOBAL_VARIABLE, EFI_IMAGE_SECURITY_DATABASE};

/// EFI action measured before the kernel starts (RTMR1).
pub const ACTION_CALLING_EFI_APP: &str = "Calling EFI Application from Boot Option";
/// EFI action measured when the kernel calls `ExitBootServices` (RTMR1).
pub const ACTION_EXIT_BOOT_SERVICES: &str = "Exit Boot Services Invocation";
/// EFI action measured when `ExitBootServices` succeeded (RTMR1).
pub const ACTION_EXIT_BOOT_SERVICES_OK: &str = "Exit Boot Services Returned with Success";
/// What OVMF appends to the command line when it passes an initrd.
pub const INITRD_CMDLINE_SUFFIX: &str = " initrd=initrd";
/// Event data of an `EV_SEPARATOR` (a `u32` zero).
pub const SEPARATOR_DATA: [u8; 4] = [0; 4];

/// Replays events into one register, from zero.
pub fn replay(events: &[MeasuredEvent]) -> Digest384 {
    replay_digests(events.iter().map(|e| &e.digest))
}

fn event(register: Register, event_type: u32, digest: Digest384, what: String) -> MeasuredEvent {
    let name = ev::name(event_type).unwrap_or("EV_UNKNOWN");
    MeasuredEvent {
        register,
        event_type,
        digest,
        description: format!("{name} {what}"),
    }
}

/// An `EV_EFI_ACTION` event: the digest is SHA-384 of the ASCII text.
pub fn efi_action(register: Register, text: &str) -> MeasuredEvent {
    event(
        register,
        ev::EV_EFI_ACTION,
        sha384(text.as_bytes()),
        format!("{text:?}"),
    )
}

/// An `EV_SEPARATOR` event (SHA-384 of four zero bytes).
pub fn separator(register: Register) -> MeasuredEvent {
    event(
        register,
        ev::EV_SEPARATOR,
        sha384(&SEPARATOR_DATA),
        "(00000000)".into(),
    )
}

// ---------------------------------------------------------------- RTMR1

/// The Authenticode SHA-384 TDVF measures for a kernel that QEMU loads with
/// these parameters: [`qemu_patch`] then [`pe::authenticode_sha384`].
pub fn kernel_authenticode(
    kernel: &[u8],
    load: &KernelLoad,
) -> std::result::Result<Digest384, String> {
    let patched = qemu_patch(kernel, load)?;
    pe::authenticode_sha384(&patched)
}

/// RTMR1 for direct kernel boot: the kernel image
/// (`EV_EFI_BOOT_SERVICES_APPLICATION`, its patched Authenticode SHA-384),
/// "Calling EFI Application from Boot Option", a separator, "Exit Boot
/// Services Invocation", "Exit Boot Services Returned with Success".
pub fn rtmr1_events(kernel_authenticode: &Digest384) -> Vec<MeasuredEvent> {
    let r = Register::Rtmr1;
    vec![
        event(
            r,
            ev::EV_EFI_BOOT_SERVICES_APPLICATION,
            *kernel_authenticode,
            "kernel (Authenticode of the QEMU-patched image)".into(),
        ),
        efi_action(r, ACTION_CALLING_EFI_APP),
        separator(r),
        efi_action(r, ACTION_EXIT_BOOT_SERVICES),
        efi_action(r, ACTION_EXIT_BOOT_SERVICES_OK),
    ]
}

// ---------------------------------------------------------------- RTMR2

/// The command line the kernel receives (and TDVF measures): `cmdline`,
/// plus ` initrd=initrd` when an initrd is passed.
pub fn measured_cmdline(cmdline: &str, has_initrd: bool) -> String {
    if has_initrd {
        format!("{cmdline}{INITRD_CMDLINE_SUFFIX}")
    } else {
        cmdline.to_string()
    }
}

/// SHA-384 of a measured command line: UTF-16LE with a terminating NUL.
pub fn cmdline_sha384(measured: &str) -> Digest384 {
    let mut bytes = Vec::with_capacity(2 * measured.len() + 2);
    for unit in measured.encode_utf16() {
        bytes.extend_from_slice(&unit.to_le_bytes());
    }
    bytes.extend_from_slice(&[0, 0]);
    sha384(&bytes)
}

/// RTMR2: the command line (`EV_EVENT_TAG` "LOADED_IMAGE::LoadOptions",
/// digest from [`cmdline_sha384`]) and, when there is one, the initrd
/// (`EV_EVENT_TAG` "Linux initrd", SHA-384 of the file).
pub fn rtmr2_events(
    cmdline_sha384: &Digest384,
    initrd_sha384: Option<&Digest384>,
) -> Vec<MeasuredEvent> {
    let r = Register::Rtmr2;
    let mut out = vec![event(
        r,
        ev::EV_EVENT_TAG,
        *cmdline_sha384,
        "LOADED_IMAGE::LoadOptions (kernel command line, UTF-16LE)".into(),
    )];
    if let Some(d) = initrd_sha384 {
        out.push(event(r, ev::EV_EVENT_TAG, *d, "Linux initrd".into()));
    }
    out
}

// ---------------------------------------------------------------- RTMR0

/// A UEFI variable as TDVF measures it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EfiVariable {
    /// Vendor GUID.
    pub vendor: Guid,
    /// Variable name.
    pub name: String,
    /// Variable data (empty when the variable does not exist).
    pub data: Vec<u8>,
}

impl EfiVariable {
    /// `UEFI_VARIABLE_DATA`: vendor GUID, `u64` name length in UTF-16 code
    /// units, `u64` data length, the name in UTF-16LE (no NUL), the data.
    pub fn uefi_variable_data(&self) -> Vec<u8> {
        let name: Vec<u16> = self.name.encode_utf16().collect();
        let mut out = Vec::with_capacity(32 + 2 * name.len() + self.data.len());
        out.extend_from_slice(self.vendor.bytes());
        out.extend_from_slice(&(name.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.data.len() as u64).to_le_bytes());
        for u in name {
            out.extend_from_slice(&u.to_le_bytes());
        }
        out.extend_from_slice(&self.data);
        out
    }
}

/// The Secure Boot variables measured into RTMR0
/// (`EV_EFI_VARIABLE_DRIVER_CONFIG`, digest = SHA-384 of the whole
/// `UEFI_VARIABLE_DATA`). The default is Secure Boot off with nothing
/// enrolled: every variable empty, as with OVMF's empty variable store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecureBootVariables {
    /// `SecureBoot` data.
    pub secure_boot: Vec<u8>,
    /// `PK` data.
    pub pk: Vec<u8>,
    /// `KEK` data.
    pub kek: Vec<u8>,
    /// `db` data.
    pub db: Vec<u8>,
    /// `dbx` data.
    pub dbx: Vec<u8>,
}

impl SecureBootVariables {
    /// The variables in measurement order.
    pub fn variables(&self) -> [EfiVariable; 5] {
        let v = |vendor, name: &str, data: &Vec<u8>| EfiVariable {
            vendor,
            name: name.into(),
            data: data.clone(),
        };
        [
            v(EFI_GLOBAL_VARIABLE, "SecureBoot", &self.secure_boot),
            v(EFI_GLOBAL_VARIABLE, "PK", &self.pk),
            v(EFI_GLOBAL_VARIABLE, "KEK", &self.kek),
            v(EFI_IMAGE_SECURITY_DATABASE, "db", &self.db),
            v(EFI_IMAGE_SECURITY_DATABASE, "dbx", &self.dbx),
        ]
    }
}

/// GUID of OVMF's DXE firmware volume (`FvNameGuid` of DXEFV).
pub const OVMF_DXEFV_GUID: Guid = Guid::from_fields(
    0x7cb8bdc9,
    0xf8eb,
    0x4f34,
    [0xaa, 0xea, 0x3e, 0xe4, 0xaf, 0x65, 0x16, 0xa1],
);
/// File GUID of EDK2's UiApp (the boot manager menu).
pub const UIAPP_FILE_GUID: Guid = Guid::from_fields(
    0x462caa21,
    0x7614,
    0x4503,
    [0x83, 0x6e, 0x8a, 0xb6, 0xf4, 0x66, 0x23, 0x31],
);
/// `LOAD_OPTION_ACTIVE | LOAD_OPTION_HIDDEN | LOAD_OPTION_CATEGORY_APP`.
pub const UIAPP_ATTRIBUTES: u32 = 0x0000_0109;

/// An `EFI_LOAD_OPTION` whose device path is a file in a firmware volume:
/// `u32` attributes, `u16` device-path length, the description in UTF-16LE
/// with NUL, `FvDevicePath(fv)` / `FvFile(file)` / end node.
pub fn fv_file_load_option(attributes: u32, description: &str, fv: &Guid, file: &Guid) -> Vec<u8> {
    let mut path = Vec::with_capacity(44);
    path.extend_from_slice(&[0x04, 0x07, 20, 0]); // MEDIA_DEVICE_PATH / PIWG firmware volume
    path.extend_from_slice(fv.bytes());
    path.extend_from_slice(&[0x04, 0x06, 20, 0]); // MEDIA_DEVICE_PATH / PIWG firmware file
    path.extend_from_slice(file.bytes());
    path.extend_from_slice(&[0x7f, 0xff, 4, 0]); // end of entire device path
    let mut out = Vec::new();
    out.extend_from_slice(&attributes.to_le_bytes());
    out.extend_from_slice(&(path.len() as u16).to_le_bytes());
    for u in description.encode_utf16().chain(std::iter::once(0)) {
        out.extend_from_slice(&u.to_le_bytes());
    }
    out.extend_from_slice(&path);
    out
}

/// The boot variables OVMF measures into RTMR0 (`EV_EFI_VARIABLE_BOOT`,
/// digest = SHA-384 of the variable *data* only in pre-2025.05 TDVF).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootVariables {
    /// `BootOrder` entries.
    pub boot_order: Vec<u16>,
    /// `Boot####` variables, in measurement order: (number, load option).
    pub options: Vec<(u16, Vec<u8>)>,
}

impl Default for BootVariables {
    /// What OVMF has on a fresh variable store with `-kernel` boot:
    /// `BootOrder = [0000]`, `Boot0000` = UiApp in OVMF's DXE volume.
    fn default() -> Self {
        BootVariables {
            boot_order: vec![0],
            options: vec![(
                0,
                fv_file_load_option(
                    UIAPP_ATTRIBUTES,
                    "UiApp",
                    &OVMF_DXEFV_GUID,
                    &UIAPP_FILE_GUID,
                ),
            )],
        }
    }
}

/// QEMU's ACPI blobs as the firmware reads them from `fw_cfg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcpiTables {
    /// `etc/table-loader` (the linker/loader script).
    pub table_loader: Vec<u8>,
    /// `etc/acpi/rsdp`.
    pub rsdp: Vec<u8>,
    /// `etc/acpi/tables`.
    pub tables: Vec<u8>,
}

/// SHA-384 digests of the three ACPI blobs (what RTMR0 extends).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcpiDigests {
    /// SHA-384 of `etc/table-loader`.
    #[serde(with = "super::digest::hex48")]
    pub table_loader: Digest384,
    /// SHA-384 of `etc/acpi/rsdp`.
    #[serde(with = "super::digest::hex48")]
    pub rsdp: Digest384,
    /// SHA-384 of `etc/acpi/tables`.
    #[serde(with = "super::digest::hex48")]
    pub tables: Digest384,
}

impl AcpiTables {
    /// The digests RTMR0 extends.
    pub fn digests(&self) -> AcpiDigests {
        AcpiDigests {
            table_loader: sha384(&self.table_loader),
            rsdp: sha384(&self.rsdp),
            tables: sha384(&self.tables),
        }
    }
}

/// Largest ACPI input accepted (64 MiB).
const MAX_ACPI_FILE: u64 = 64 << 20;

impl AcpiDigests {
    /// Loads QEMU's ACPI tables for RTMR0 from `path`, either
    /// * a directory holding the three `fw_cfg` files as QEMU exposes them,
    ///   named `table-loader`, `rsdp` and `tables` (e.g. copied from
    ///   `/sys/firmware/qemu_fw_cfg/by_name/etc/…/raw` in a guest started
    ///   with the same QEMU version and device layout), or
    /// * a JSON file with either the blobs as hex
    ///   (`{"table_loader": "…", "rsdp": "…", "tables": "…"}`) or their
    ///   digests (`{"table_loader_sha384": …, "rsdp_sha384": …,
    ///   "tables_sha384": …}`).
    pub fn load(path: &Path) -> Result<AcpiDigests> {
        if path.is_dir() {
            let read = |name: &str| read_file(&path.join(name), "ACPI table blob");
            let tables = AcpiTables {
                table_loader: read("table-loader")?,
                rsdp: read("rsdp")?,
                tables: read("tables")?,
            };
            return Ok(tables.digests());
        }
        let text = read_file_limited(path, "ACPI tables JSON", MAX_ACPI_FILE)?;
        AcpiDigests::from_json(&text).map_err(|what| Error::BadArtifact {
            file: path.display().to_string(),
            what,
        })
    }

    /// Parses the JSON form described at [`AcpiDigests::load`].
    pub fn from_json(text: &[u8]) -> std::result::Result<AcpiDigests, String> {
        let v: serde_json::Value =
            serde_json::from_slice(text).map_err(|e| format!("not JSON: {e}"))?;
        let obj = v.as_object().ok_or("ACPI tables JSON must be an object")?;
        let field = |name: &str| -> std::result::Result<Digest384, String> {
            if let Some(d) = obj.get(&format!("{name}_sha384")) {
                let s = d
                    .as_str()
                    .ok_or(format!("{name}_sha384 must be a hex string"))?;
                return parse_hex48(s).map_err(|e| format!("{name}_sha384: {e}"));
            }
            let s = obj
                .get(name)
                .and_then(|x| x.as_str())
                .ok_or(format!("missing \"{name}\" (hex) or \"{name}_sha384\""))?;
            let bytes = hex::decode(s.trim()).map_err(|e| format!("{name}: not hex: {e}"))?;
            Ok(sha384(&bytes))
        };
        Ok(AcpiDigests {
            table_loader: field("table_loader")?,
            rsdp: field("rsdp")?,
            tables: field("tables")?,
        })
    }
}

/// Everything RTMR0 depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rtmr0Inputs {
    /// SHA-384 of the TD HOB ([`super::Tdvf::td_hob`]).
    pub td_hob_sha384: Digest384,
    /// SHA-384 of the CFV ([`super::Tdvf::cfv_digest`]).
    pub cfv_sha384: Digest384,
    /// Secure Boot variables (default: all empty).
    pub secure_boot: SecureBootVariables,
    /// QEMU's ACPI tables (depend on QEMU version and device layout).
    pub acpi: AcpiDigests,
    /// Boot variables (default: OVMF's UiApp only).
    pub boot: BootVariables,
}

/// RTMR0: TD HOB (`EV_EFI_HANDOFF_TABLES2`), CFV
/// (`EV_EFI_PLATFORM_FIRMWARE_BLOB2`), SecureBoot, PK, KEK, db, dbx
/// (`EV_EFI_VARIABLE_DRIVER_CONFIG`), a separator, QEMU's ACPI loader, RSDP
/// and tables (`EV_PLATFORM_CONFIG_FLAGS`), `BootOrder` and each `Boot####`
/// (`EV_EFI_VARIABLE_BOOT`).
pub fn rtmr0_events(inputs: &Rtmr0Inputs) -> Vec<MeasuredEvent> {
    let r = Register::Rtmr0;
    let mut out = vec![
        event(
            r,
            ev::EV_EFI_HANDOFF_TABLES2,
            inputs.td_hob_sha384,
            "TdxTable (TD HOB built by QEMU)".into(),
        ),
        event(
            r,
            ev::EV_EFI_PLATFORM_FIRMWARE_BLOB2,
            inputs.cfv_sha384,
            "CFV (firmware configuration volume)".into(),
        ),
    ];
    for var in inputs.secure_boot.variables() {
        out.push(event(
            r,
            ev::EV_EFI_VARIABLE_DRIVER_CONFIG,
            sha384(&var.uefi_variable_data()),
            format!("{} ({} bytes)", var.name, var.data.len()),
        ));
    }
    out.push(separator(r));
    for (name, d) in [
        ("etc/table-loader", &inputs.acpi.table_loader),
        ("etc/acpi/rsdp", &inputs.acpi.rsdp),
        ("etc/acpi/tables", &inputs.acpi.tables),
    ] {
        out.push(event(
            r,
            ev::EV_PLATFORM_CONFIG_FLAGS,
            *d,
            format!("\"ACPI DATA\" QEMU {name}"),
        ));
    }
    let order: Vec<u8> = inputs
        .boot
        .boot_order
        .iter()
        .flat_map(|n| n.to_le_bytes())
        .collect();
    let order_text: Vec<String> = inputs
        .boot
        .boot_order
        .iter()
        .map(|n| format!("{n:04X}"))
        .collect();
    out.push(event(
        r,
        ev::EV_EFI_VARIABLE_BOOT,
        sha384(&order),
        format!("BootOrder [{}]", order_text.join(",")),
    ));
    for (n, option) in &inputs.boot.options {
        out.push(event(
            r,
            ev::EV_EFI_VARIABLE_BOOT,
            sha384(option),
            format!("Boot{n:04X}"),
        ));
    }
    out
}

// ---------------------------------------------------------------- RTMR3

// The names, digest rule and canonical JSON are the attestation core's
// (`chrysalis_attestation::runtime_events`, re-exported above): the agent
// extends exactly those events. Here they become [`MeasuredEvent`]s.

/// [`runtime_events::rtmr3_events`] as [`MeasuredEvent`]s: `config`, then
/// `boot-done`.
pub fn rtmr3_events(config: &[u8]) -> Vec<MeasuredEvent> {
    rtmr3_boot_events(Some(config), None)
}

/// [`runtime_events::rtmr3_boot_events`] as [`MeasuredEvent`]s: `config`
/// (when given), `gpu` (when given), then `boot-done`.
pub fn rtmr3_boot_events(
    config: Option<&[u8]>,
    gpu_digest: Option<&[u8; 48]>,
) -> Vec<MeasuredEvent> {
    runtime_events::rtmr3_boot_events(config, gpu_digest)
        .into_iter()
        .map(MeasuredEvent::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_is_utf16le_with_nul() {
        let mut expect = Vec::new();
        for c in "a initrd=initrd".encode_utf16() {
            expect.extend_from_slice(&c.to_le_bytes());
        }
        expect.extend_from_slice(&[0, 0]);
        assert_eq!(
            cmdline_sha384(&measured_cmdline("a", true)),
            sha384(&expect)
        );
        assert_eq!(measured_cmdline("a", false), "a");
    }

    #[test]
    fn rtmr3_rule() {
        let cfg = b"{}";
        let ev = rtmr3_events(cfg);
        let mut first = b"chrysalis:config:".to_vec();
        first.extend_from_slice(&sha384(cfg));
        assert_eq!(ev[0].digest, sha384(&first));
        assert_eq!(ev[1].digest, sha384(b"chrysalis:boot-done:"));
        assert_eq!(rtmr3_expected(cfg), replay(&ev));
        assert_ne!(rtmr3_expected(cfg), rtmr3_expected(b"{\"a\":1}"));
    }

    #[test]
    fn acpi_json_forms() {
        let hexed = br#"{"table_loader":"00","rsdp":"01","tables":"02"}"#;
        let d = AcpiDigests::from_json(hexed).unwrap();
        assert_eq!(d.rsdp, sha384(&[1]));
        let digests = format!(
            r#"{{"table_loader_sha384":"{}","rsdp_sha384":"{}","tables_sha384":"{}"}}"#,
            hex::encode(d.table_loader),
            hex::encode(d.rsdp),
            hex::encode(d.tables)
        );
        assert_eq!(AcpiDigests::from_json(digests.as_bytes()).unwrap(), d);
        assert!(AcpiDigests::from_json(br#"{"rsdp":"00"}"#)
            .unwrap_err()
            .contains("table_loader"));
        assert!(AcpiDigests::from_json(b"[1]").is_err());
    }
}
