//! The image identifiers the agent puts in its certificate's claims
//! (`ImageIdentifiers`: release name, SHA-256 of its `measurements.json`).
//!
//! A hint for display only: clients name a node by the registers its
//! evidence proves, never by what it claims, and warn when the two differ.

use chrysalis_ratls::ImageId;

use crate::config::Config;
use crate::error::{Error, Result};

/// Largest image-id file read (bytes).
const MAX_IMAGE_ID_BYTES: u64 = 4096;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageIdFile {
    release: String,
    #[serde(default)]
    measurements_sha256: Option<String>,
}

/// The image identifiers for `config`: from `--image-id FILE`, else, for a
/// simulator playing a published release, that release (name and SHA-256
/// of its compiled-in `measurements.json`); else none.
pub fn image_id(config: &Config) -> Result<Option<ImageId>> {
    if let Some(path) = &config.image_id {
        let bad = |why: String| Error::Config(format!("--image-id {}: {why}", path.display()));
        let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
        if meta.len() > MAX_IMAGE_ID_BYTES {
            return Err(bad(format!(
                "{} bytes, at most {MAX_IMAGE_ID_BYTES}",
                meta.len()
            )));
        }
        let text = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let f: ImageIdFile = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
        if f.release.is_empty() || f.release.len() > 256 {
            return Err(bad("release must be 1..=256 bytes".into()));
        }
        let measurements_sha256 = match f.measurements_sha256 {
            None => None,
            Some(h) => Some(
                hex::decode(&h)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| bad("measurements_sha256 must be 32 bytes of hex".into()))?,
            ),
        };
        return Ok(Some(ImageId {
            release: Some(f.release),
            measurements_sha256,
        }));
    }
    let Some(played) = &config.sim.release else {
        return Ok(None);
    };
    let name = played.label().split(" / ").next().unwrap_or_default();
    let sha = chrysalis_releases::Catalogue::builtin()
        .release(name)
        .ok()
        .map(|r| *r.manifest_sha256());
    Ok(Some(ImageId {
        release: Some(name.to_owned()),
        measurements_sha256: sha,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_a_file_or_the_played_release() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("image-id.json");
        std::fs::write(&f, br#"{"release":"chrysalis-0.2.0-cpu"}"#).unwrap();
        let mut cfg = Config::with_provider(crate::config::ProviderKind::Sim);
        cfg.image_id = Some(f.clone());
        let id = image_id(&cfg).unwrap().unwrap();
        assert_eq!(id.release.as_deref(), Some("chrysalis-0.2.0-cpu"));
        assert_eq!(id.measurements_sha256, None);
        std::fs::write(&f, br#"{"release":"x","measurements_sha256":"zz"}"#).unwrap();
        let e = image_id(&cfg).unwrap_err().to_string();
        assert!(e.contains("measurements_sha256"), "{e}");
        std::fs::write(&f, br#"{"release":"x","extra":1}"#).unwrap();
        assert!(image_id(&cfg).is_err());
        cfg.image_id = None;
        assert!(image_id(&cfg).unwrap().is_none());
        cfg.sim.release = Some(
            chrysalis_sim::SimRelease::builtin("chrysalis-0.2.0-cpu", "snp-2cpu-EPYC-v4", None)
                .unwrap(),
        );
        let id = image_id(&cfg).unwrap().unwrap();
        assert_eq!(id.release.as_deref(), Some("chrysalis-0.2.0-cpu"));
        let want = *chrysalis_releases::Catalogue::builtin()
            .release("chrysalis-0.2.0-cpu")
            .unwrap()
            .manifest_sha256();
        assert_eq!(id.measurements_sha256, Some(want));
    }
}
