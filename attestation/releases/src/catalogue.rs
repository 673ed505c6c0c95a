//! The releases a client knows: compiled in ([`Catalogue::builtin`]) or read
//! from a directory of release directories ([`Catalogue::from_dir`]).

use std::path::Path;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::manifest::{Configuration, MeasurementsManifest};

include!(concat!(env!("OUT_DIR"), "/builtin.rs"));

/// True for a gpu release's name: it ends in `-gpu` (the naming rule of
/// `chrysalis image build --profile gpu`).
pub fn is_gpu_release(name: &str) -> bool {
    name.ends_with("-gpu")
}

/// One published release: its name and its `measurements.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    name: String,
    manifest: MeasurementsManifest,
    manifest_sha256: [u8; 32],
}

impl Release {
    /// Parses a release's `measurements.json` text; `name` is the release
    /// directory's name (e.g. `chrysalis-0.2.0-cpu`).
    pub fn parse(name: &str, measurements_json: &str) -> Result<Release> {
        let manifest = MeasurementsManifest::from_json(measurements_json).map_err(|message| {
            Error::InvalidManifest {
                origin: format!("{name}/measurements.json"),
                message,
            }
        })?;
        Ok(Release {
            name: name.to_owned(),
            manifest,
            manifest_sha256: Sha256::digest(measurements_json.as_bytes()).into(),
        })
    }

    /// The release name (its directory under `measurements/releases/`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The parsed `measurements.json`.
    pub fn manifest(&self) -> &MeasurementsManifest {
        &self.manifest
    }

    /// SHA-256 of the `measurements.json` bytes: the image identifier the
    /// agent puts in its certificate (a hint for display; registers decide).
    pub fn manifest_sha256(&self) -> &[u8; 32] {
        &self.manifest_sha256
    }

    /// The image profile: `gpu` when the release name ends in `-gpu`
    /// (the naming rule of `chrysalis image build --profile`), else `cpu`.
    /// A gpu release's nodes must present verified GPU evidence.
    pub fn is_gpu(&self) -> bool {
        is_gpu_release(&self.name)
    }

    /// The release's configurations, in file order.
    pub fn configurations(&self) -> impl Iterator<Item = ConfigurationRef<'_>> {
        self.manifest
            .configurations
            .iter()
            .map(move |configuration| ConfigurationRef {
                release: self,
                configuration,
            })
    }

    /// The configuration named `name`.
    pub fn configuration(&self, name: &str) -> Result<ConfigurationRef<'_>> {
        self.configurations()
            .find(|c| c.configuration.name == name)
            .ok_or_else(|| Error::UnknownConfiguration {
                release: self.name.clone(),
                name: name.to_owned(),
                known: self
                    .manifest
                    .configurations
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// A configuration of a release (a VM shape and its expected registers).
#[derive(Debug, Clone, Copy)]
pub struct ConfigurationRef<'a> {
    /// The release it belongs to.
    pub release: &'a Release,
    /// The configuration entry of its `measurements.json`.
    pub configuration: &'a Configuration,
}

impl ConfigurationRef<'_> {
    /// `release / configuration`, the label a policy's set carries and
    /// every output shows (e.g. `chrysalis-0.2.0-cpu / snp-2cpu-EPYC-v4`).
    pub fn label(&self) -> String {
        format!("{} / {}", self.release.name, self.configuration.name)
    }
}

/// A set of releases.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Catalogue {
    releases: Vec<Release>,
}

impl Catalogue {
    /// The releases compiled into this build (`measurements/releases/*`),
    /// sorted by name. Parsed once.
    ///
    /// A malformed embedded manifest is a build defect; the crate's tests
    /// parse every embedded release, so it cannot ship.
    pub fn builtin() -> &'static Catalogue {
        static CATALOGUE: OnceLock<Catalogue> = OnceLock::new();
        CATALOGUE.get_or_init(|| Catalogue {
            releases: BUILTIN
                .iter()
                .filter_map(|(name, text)| Release::parse(name, text).ok())
                .collect(),
        })
    }

    /// The embedded releases, each parsed with its error (for tests and
    /// `chrysalis releases`).
    pub fn builtin_checked() -> Result<Catalogue> {
        Ok(Catalogue {
            releases: BUILTIN
                .iter()
                .map(|(name, text)| Release::parse(name, text))
                .collect::<Result<_>>()?,
        })
    }

    /// Reads every `DIR/*/measurements.json` (a `measurements/releases`
    /// directory of another checkout or a downloaded release set).
    pub fn from_dir(dir: &Path) -> Result<Catalogue> {
        let io = |path: &Path, source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let mut releases = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
            let entry = entry.map_err(|e| io(dir, e))?;
            let path = entry.path().join("measurements.json");
            if !path.is_file() {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
            releases.push(Release::parse(&entry.file_name().to_string_lossy(), &text)?);
        }
        releases.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Catalogue { releases })
    }

    /// A catalogue of exactly these releases.
    pub fn from_releases(mut releases: Vec<Release>) -> Catalogue {
        releases.sort_by(|a, b| a.name.cmp(&b.name));
        Catalogue { releases }
    }

    /// The releases, sorted by name.
    pub fn releases(&self) -> &[Release] {
        &self.releases
    }

    /// The release named `name`.
    pub fn release(&self, name: &str) -> Result<&Release> {
        self.releases
            .iter()
            .find(|r| r.name == name)
            .ok_or_else(|| Error::UnknownRelease {
                name: name.to_owned(),
                known: self.names(),
            })
    }

    /// Only the release named `name` (the CLI's `--release NAME`).
    pub fn only(&self, name: &str) -> Result<Catalogue> {
        Ok(Catalogue {
            releases: vec![self.release(name)?.clone()],
        })
    }

    /// Every configuration of every release.
    pub fn configurations(&self) -> impl Iterator<Item = ConfigurationRef<'_>> {
        self.releases.iter().flat_map(Release::configurations)
    }

    /// The configuration whose [`ConfigurationRef::label`] is `label` (what
    /// a policy decision names as matched).
    pub fn find(&self, label: &str) -> Option<ConfigurationRef<'_>> {
        self.configurations().find(|c| c.label() == label)
    }

    /// Release names, comma-separated (for messages).
    pub fn names(&self) -> String {
        if self.releases.is_empty() {
            return "none".into();
        }
        self.releases
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_release_parses_and_has_configurations() {
        let c = Catalogue::builtin_checked().expect("embedded releases parse");
        assert!(!c.releases().is_empty(), "no release embedded");
        assert_eq!(&c, Catalogue::builtin());
        for r in c.releases() {
            assert!(r.configurations().next().is_some(), "{}", r.name());
            assert_eq!(
                r.manifest().image.as_deref(),
                Some(r.name()),
                "the manifest's image name is its directory name"
            );
        }
    }

    #[test]
    fn unknown_names_list_what_exists() {
        let c = Catalogue::builtin();
        let e = c.release("chrysalis-9.9.9-cpu").unwrap_err().to_string();
        assert!(
            e.contains("chrysalis-9.9.9-cpu") && e.contains("published:"),
            "{e}"
        );
        let r = &c.releases()[0];
        let e = r.configuration("tdx-1cpu").unwrap_err().to_string();
        assert!(e.contains("tdx-1cpu") && e.contains("it has:"), "{e}");
        let label = r.configurations().next().unwrap().label();
        assert_eq!(c.find(&label).unwrap().label(), label);
        assert!(c.find("nope / nope").is_none());
    }

    #[test]
    fn retired_releases_are_not_embedded() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../measurements/retired");
        let retired: Vec<String> = std::fs::read_dir(&dir)
            .expect("measurements/retired")
            .flatten()
            .filter(|e| e.path().join("measurements.json").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            retired.iter().any(|n| n == "chrysalis-0.1.0-cpu"),
            "{retired:?}"
        );
        let c = Catalogue::builtin();
        for name in &retired {
            assert!(c.release(name).is_err(), "{name} is retired but embedded");
        }
        assert!(!c.names().contains("chrysalis-0.1.0-cpu"), "{}", c.names());
        assert!(c.release("chrysalis-0.2.0-cpu").is_ok(), "{}", c.names());
    }

    #[test]
    fn a_bad_manifest_is_named() {
        let e = Release::parse("x", "{\"schema\": 1}")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("x/measurements.json: "), "{e}");
    }
}
