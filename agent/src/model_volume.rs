//! The model volume: a read-only erofs image with a dm-verity hash tree,
//! attached by the host as two virtio disks, whose root hash comes from the
//! host configuration that the agent measures before it serves.
//!
//! The host builds the volume with `chrysalis image model DIR --out OUT`
//! and adds `"model_volume": {"verity_root_hash": "<64 hex>"}` to the
//! runtime configuration (`chrysalis launch --config FILE --model OUT`).
//! Because that configuration is measured (RTMR3 on TDX, HOST_DATA on
//! SEV-SNP), a client that checks the configuration knows the exact model
//! bytes the engine can read: the kernel refuses every block that does not
//! hash up to the root. `chrysalis-model-volume` (a oneshot unit ordered
//! before the engine) attaches and mounts it; this module holds the typed
//! configuration and the commands, so they can be tested without a VM.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::runtime_config::RuntimeConfig;

/// Key of the model volume section in the runtime configuration.
pub const CONFIG_KEY: &str = "model_volume";
/// Device-mapper name of the verified model volume.
pub const DM_NAME: &str = "chrysalis-model";
/// Guest path of the volume's data disk (virtio serial `chrysalis-model`).
pub const DATA_DEVICE: &str = "/dev/disk/by-id/virtio-chrysalis-model";
/// Guest path of the volume's hash-tree disk (virtio serial `chrysalis-model-ht`).
pub const HASH_DEVICE: &str = "/dev/disk/by-id/virtio-chrysalis-model-ht";
/// Where the engine finds the model.
pub const MOUNTPOINT: &str = "/models";
/// systemd's veritysetup helper (package systemd-cryptsetup).
pub const VERITYSETUP: &str = "/usr/lib/systemd/systemd-veritysetup";

/// The `model_volume` section: `{"verity_root_hash": "<64 lowercase or
/// uppercase hex digits>"}` (SHA-256 dm-verity root hash). Unknown keys are
/// refused, so a typo cannot silently leave the model unverified.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    verity_root_hash: String,
}

/// A model volume the host configuration names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelVolume {
    /// dm-verity root hash (SHA-256) of the volume.
    pub verity_root_hash: [u8; 32],
}

impl ModelVolume {
    /// The volume named by `config`, or `None` when it names none.
    pub fn from_config(config: &RuntimeConfig) -> Result<Option<Self>> {
        let value: serde_json::Value = serde_json::from_slice(&config.canonical)
            .map_err(|e| Error::Config(format!("runtime configuration: {e}")))?;
        let Some(section) = value.get(CONFIG_KEY) else {
            return Ok(None);
        };
        let section: Section = serde_json::from_value(section.clone()).map_err(|e| {
            Error::Config(format!(
                "runtime configuration: `{CONFIG_KEY}` must be {{\"verity_root_hash\": \"<64 hex digits>\"}}: {e}"
            ))
        })?;
        let bytes = hex::decode(&section.verity_root_hash)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| {
                Error::Config(format!(
                    "runtime configuration: `{CONFIG_KEY}.verity_root_hash` must be 64 hex \
                     digits (a SHA-256 root hash), got {:?}",
                    section.verity_root_hash
                ))
            })?;
        Ok(Some(Self {
            verity_root_hash: bytes,
        }))
    }

    /// The commands that attach and mount the volume, in order: systemd's
    /// veritysetup (the kernel checks every block against the root hash),
    /// then a read-only, no-exec mount of the erofs inside.
    pub fn commands(&self, devices: &Devices) -> Vec<Vec<String>> {
        let dm = format!("/dev/mapper/{DM_NAME}");
        vec![
            vec![
                devices.veritysetup.display().to_string(),
                "attach".into(),
                DM_NAME.into(),
                devices.data.display().to_string(),
                devices.hash.display().to_string(),
                hex::encode(self.verity_root_hash),
            ],
            vec![
                "mount".into(),
                "-t".into(),
                "erofs".into(),
                "-o".into(),
                "ro,nodev,nosuid,noexec".into(),
                dm,
                devices.mountpoint.display().to_string(),
            ],
        ]
    }
}

/// Where the volume's parts are in the guest (defaults: the constants above).
#[derive(Debug, Clone)]
pub struct Devices {
    /// systemd-veritysetup binary.
    pub veritysetup: PathBuf,
    /// Data disk.
    pub data: PathBuf,
    /// Hash-tree disk.
    pub hash: PathBuf,
    /// Mount point.
    pub mountpoint: PathBuf,
}

impl Default for Devices {
    fn default() -> Self {
        Self {
            veritysetup: VERITYSETUP.into(),
            data: DATA_DEVICE.into(),
            hash: HASH_DEVICE.into(),
            mountpoint: MOUNTPOINT.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> RuntimeConfig {
        RuntimeConfig::parse(text.as_bytes(), "cfg.json").unwrap()
    }

    #[test]
    fn absent_section_means_no_volume() {
        assert_eq!(
            ModelVolume::from_config(&cfg(r#"{"model":"m"}"#)).unwrap(),
            None
        );
    }

    #[test]
    fn root_hash_is_parsed_and_used_verbatim() {
        let hash = "ab".repeat(32);
        let v = ModelVolume::from_config(&cfg(&format!(
            r#"{{"model_volume":{{"verity_root_hash":"{}"}}}}"#,
            hash.to_uppercase()
        )))
        .unwrap()
        .unwrap();
        assert_eq!(v.verity_root_hash, [0xab; 32]);
        let cmds = v.commands(&Devices::default());
        assert_eq!(
            cmds[0],
            [
                "/usr/lib/systemd/systemd-veritysetup",
                "attach",
                DM_NAME,
                DATA_DEVICE,
                HASH_DEVICE,
                hash.as_str()
            ]
        );
        assert_eq!(cmds[1][0], "mount");
        assert!(cmds[1].contains(&"ro,nodev,nosuid,noexec".to_string()));
        assert_eq!(cmds[1].last().unwrap(), MOUNTPOINT);
    }

    #[test]
    fn malformed_sections_are_refused_by_name() {
        for (text, want) in [
            (r#"{"model_volume":"ab"}"#, "must be {\"verity_root_hash\""),
            (r#"{"model_volume":{}}"#, "verity_root_hash"),
            (r#"{"model_volume":{"verity_root_hash":"abc"}}"#, "64 hex"),
            (r#"{"model_volume":{"verity_root_hash":"zz"}}"#, "64 hex"),
            (
                &format!(
                    r#"{{"model_volume":{{"verity_root_hash":"{}"}}}}"#,
                    "a".repeat(66)
                ),
                "64 hex",
            ),
            (
                &format!(
                    r#"{{"model_volume":{{"verity_root_hash":"{}","verity_roothash":"x"}}}}"#,
                    "a".repeat(64)
                ),
                "unknown field",
            ),
        ] {
            let e = ModelVolume::from_config(&cfg(text))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(want) && e.contains("model_volume"),
                "{text}: {e}"
            );
        }
    }
}
