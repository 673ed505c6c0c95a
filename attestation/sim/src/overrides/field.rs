//! The settable fields of the simulated reports: [`SimField`], the TEE
//! whose report has each, and how its value is written ([`FieldKind`]).

use chrysalis_attestation::Tee;

/// How a field's value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// Hex bytes in report byte order, exactly this many.
    Bytes(usize),
    /// An unsigned integer of this many bits (stored little-endian).
    Int(u32),
}

/// Which report a field belongs to: `None` for both (report data).
type FieldTee = Option<Tee>;

macro_rules! fields {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, $tee:expr, $kind:expr; )*) => {
        /// A settable field of the simulated TD report or SNP report.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum SimField {
            $( $(#[$doc])* $variant, )*
        }

        impl SimField {
            /// Every settable field, in report order (TDX, then SNP).
            pub const ALL: &'static [SimField] = &[$(SimField::$variant),*];

            /// The name `--sim-set` uses (lower case, as `attest show
            /// --json` and `measurements.json` spell it).
            pub fn name(self) -> &'static str {
                match self { $(SimField::$variant => $name,)* }
            }

            /// The TEE whose report has it (`None`: both).
            pub fn tee(self) -> Option<Tee> {
                match self { $(SimField::$variant => $tee,)* }
            }

            /// How its value is written.
            pub fn kind(self) -> FieldKind {
                match self { $(SimField::$variant => $kind,)* }
            }
        }
    };
}

const TDX: FieldTee = Some(Tee::Tdx);
const SNP: FieldTee = Some(Tee::Snp);
const BOTH: FieldTee = None;
use FieldKind::{Bytes, Int};

fields! {
    /// TDX TEE_TCB_SVN (16 bytes; byte 0 is the TDX module SVN).
    TeeTcbSvn = "tee_tcb_svn", TDX, Bytes(16);
    /// TDX MRSEAM (TDX module measurement).
    MrSeam = "mrseam", TDX, Bytes(48);
    /// TDX MRSIGNERSEAM.
    MrSignerSeam = "mrsignerseam", TDX, Bytes(48);
    /// TDX SEAM attributes.
    SeamAttributes = "seam_attributes", TDX, Int(64);
    /// TDX TD attributes (bit 0 DEBUG, bits 1–7 TD-under-debug, bit 28
    /// SEPT_VE_DISABLE, bit 29 MIGRATABLE, bit 30 PKS, bit 31 KL, bit 63
    /// PERFMON).
    TdAttributes = "td_attributes", TDX, Int(64);
    /// TDX XFAM.
    Xfam = "xfam", TDX, Int(64);
    /// TDX MRTD.
    Mrtd = "mrtd", TDX, Bytes(48);
    /// TDX MRCONFIGID.
    MrConfigId = "mrconfigid", TDX, Bytes(48);
    /// TDX MROWNER.
    MrOwner = "mrowner", TDX, Bytes(48);
    /// TDX MROWNERCONFIG.
    MrOwnerConfig = "mrownerconfig", TDX, Bytes(48);
    /// TDX RTMR0.
    Rtmr0 = "rtmr0", TDX, Bytes(48);
    /// TDX RTMR1.
    Rtmr1 = "rtmr1", TDX, Bytes(48);
    /// TDX RTMR2.
    Rtmr2 = "rtmr2", TDX, Bytes(48);
    /// TDX RTMR3 (applied after the agent's extends, so it wins).
    Rtmr3 = "rtmr3", TDX, Bytes(48);
    /// REPORT_DATA (64 bytes; the RA-TLS binding lives here).
    ReportData = "report_data", BOTH, Bytes(64);
    /// SNP GUEST_SVN.
    GuestSvn = "guest_svn", SNP, Int(32);
    /// SNP guest POLICY (bit 16 SMT, 17 reserved one, 18 MIGRATE_MA,
    /// 19 DEBUG, 20 SINGLE_SOCKET).
    Policy = "policy", SNP, Int(64);
    /// SNP FAMILY_ID.
    FamilyId = "family_id", SNP, Bytes(16);
    /// SNP IMAGE_ID.
    ImageId = "image_id", SNP, Bytes(16);
    /// SNP VMPL the report was requested at.
    Vmpl = "vmpl", SNP, Int(32);
    /// SNP CURRENT_TCB (raw TCB_VERSION, Milan/Genoa layout).
    CurrentTcb = "current_tcb", SNP, Int(64);
    /// SNP PLATFORM_INFO.
    PlatformInfo = "platform_info", SNP, Int(64);
    /// SNP key info (bit 0 AUTHOR_KEY_EN, bits 4:2 SIGNING_KEY).
    KeyInfo = "key_info", SNP, Int(32);
    /// SNP MEASUREMENT (launch digest).
    Measurement = "measurement", SNP, Bytes(48);
    /// SNP HOST_DATA.
    HostData = "host_data", SNP, Bytes(32);
    /// SNP ID_KEY_DIGEST.
    IdKeyDigest = "id_key_digest", SNP, Bytes(48);
    /// SNP AUTHOR_KEY_DIGEST.
    AuthorKeyDigest = "author_key_digest", SNP, Bytes(48);
    /// SNP REPORT_ID.
    ReportId = "report_id", SNP, Bytes(32);
    /// SNP REPORT_ID_MA.
    ReportIdMa = "report_id_ma", SNP, Bytes(32);
    /// SNP REPORTED_TCB (raw TCB_VERSION, Milan/Genoa layout: bootloader
    /// byte 0, TEE byte 1, SNP byte 6, microcode byte 7). The simulated
    /// VCEK is issued for it, and the current, committed and launch TCB
    /// follow it unless set too.
    ReportedTcb = "reported_tcb", SNP, Int(64);
    /// SNP COMMITTED_TCB (raw TCB_VERSION).
    CommittedTcb = "committed_tcb", SNP, Int(64);
    /// SNP LAUNCH_TCB (raw TCB_VERSION).
    LaunchTcb = "launch_tcb", SNP, Int(64);
}

impl SimField {
    /// The field named `name` (case-insensitive; `-` may stand for `_`).
    pub fn from_name(name: &str) -> Option<SimField> {
        let n = name.trim().to_ascii_lowercase().replace('-', "_");
        SimField::ALL.iter().copied().find(|f| f.name() == n)
    }

    /// Every field name, comma-separated (for messages).
    pub fn names() -> String {
        SimField::ALL
            .iter()
            .map(|f| f.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Whether the `tee` report has this field.
    pub fn applies_to(self, tee: Tee) -> bool {
        self.tee().is_none_or(|t| t == tee)
    }
}
