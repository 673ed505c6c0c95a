//! The package lock: every `.deb` an image build installs (into the image
//! and into mkosi's tools tree, whose `mkfs.erofs`, `systemd-repart` and
//! `ukify` make the artifact bytes), by archive, suite, pool path, size and
//! SHA-256. A locked build installs exactly these files and nothing else
//! (see [`super::mirror`]); a file that can no longer be fetched is named
//! before anything is built.
//!
//! File format (`image/locks/PROFILE.lock`, one entry per line, `#` comments):
//!
//! ```text
//! SHA256-HEX SIZE ARCHIVE SUITE[,SUITE...] pool/COMPONENT/.../NAME_VERSION_ARCH.deb
//! ```
//!
//! `ARCHIVE` is `debian` (trixie, trixie-updates, trixie-backports) or
//! `debian-security` (trixie-security); SIZE is in bytes. Entries are sorted
//! by archive and path, so a re-lock diffs cleanly.

use std::fmt::Write as _;

use thiserror::Error;

/// A Debian archive the lock draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Archive {
    /// `http://deb.debian.org/debian`: the release, -updates, -backports.
    Debian,
    /// `http://deb.debian.org/debian-security`: -security.
    DebianSecurity,
}

impl Archive {
    /// Both archives, in lock order.
    pub const ALL: [Archive; 2] = [Archive::Debian, Archive::DebianSecurity];

    /// The name used in lock lines and as the first path segment of the
    /// loopback mirror.
    pub fn name(self) -> &'static str {
        match self {
            Archive::Debian => "debian",
            Archive::DebianSecurity => "debian-security",
        }
    }

    /// From a lock line's / URL's archive segment.
    pub fn from_name(s: &str) -> Option<Self> {
        Archive::ALL.into_iter().find(|a| a.name() == s)
    }

    /// The suites this archive serves to the image build, as named in
    /// `image/sandbox`'s source list.
    pub fn suites(self) -> &'static [&'static str] {
        match self {
            Archive::Debian => &["trixie", "trixie-updates", "trixie-backports"],
            Archive::DebianSecurity => &["trixie-security"],
        }
    }
}

/// The components every suite of the source list names.
pub const COMPONENTS: [&str; 4] = ["main", "contrib", "non-free", "non-free-firmware"];

/// One locked `.deb`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedDeb {
    /// SHA-256 of the file.
    pub sha256: [u8; 32],
    /// Size in bytes.
    pub size: u64,
    /// Archive it comes from.
    pub archive: Archive,
    /// Suites whose index lists it (at least one).
    pub suites: Vec<String>,
    /// Path inside the archive, `pool/COMPONENT/...deb`.
    pub path: String,
}

impl LockedDeb {
    /// The pool component (`main`, `contrib`, `non-free`, `non-free-firmware`).
    pub fn component(&self) -> &str {
        pool_component(&self.path).unwrap_or("")
    }

    /// The file name (`NAME_VERSION_ARCH.deb`).
    pub fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }

    /// Lowercase hex of [`Self::sha256`].
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

/// A parsed lock file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PackageLock {
    /// The entries, sorted by (archive, path), no path twice.
    pub entries: Vec<LockedDeb>,
}

/// Why a lock file was refused.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockError {
    /// A line is not `SHA256 SIZE ARCHIVE SUITES PATH`.
    #[error("line {line}: {why}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        why: String,
    },
    /// The same pool path appears twice.
    #[error("line {line}: {path} is locked twice")]
    Duplicate {
        /// 1-based line number of the second entry.
        line: usize,
        /// The pool path.
        path: String,
    },
    /// No entries at all.
    #[error("the lock lists no package")]
    Empty,
}

/// The component of a pool path: `pool/COMPONENT/...`, or
/// `pool/updates/COMPONENT/...` (the security archive's layout).
fn pool_component(p: &str) -> Option<&str> {
    let mut parts = p.split('/');
    if parts.next()? != "pool" {
        return None;
    }
    let c = match parts.next()? {
        "updates" => parts.next()?,
        c => c,
    };
    COMPONENTS.contains(&c).then_some(c)
}

/// Characters allowed in a pool path (Debian's file names: name, epoch-free
/// version, arch, with `+` and `~`; stored decoded, never percent-encoded).
fn path_ok(p: &str) -> bool {
    p.starts_with("pool/")
        && p.ends_with(".deb")
        && p.split('/').count() >= 4
        && !p
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._+~-".contains(&b))
        && pool_component(p).is_some()
}

fn suite_ok(archive: Archive, s: &str) -> bool {
    archive.suites().contains(&s)
}

impl PackageLock {
    /// Parses a lock file (the whole text; nothing is skipped silently).
    pub fn parse(text: &str) -> Result<Self, LockError> {
        let mut entries: Vec<LockedDeb> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let err = |why: String| LockError::Line { line, why };
            let f: Vec<&str> = l.split_ascii_whitespace().collect();
            let [sha, size, archive, suites, path] = f[..] else {
                return Err(err(format!(
                    "expected 5 fields (SHA256 SIZE ARCHIVE SUITES PATH), found {}",
                    f.len()
                )));
            };
            let mut sha256 = [0u8; 32];
            if sha.len() != 64 || hex::decode_to_slice(sha, &mut sha256).is_err() {
                return Err(err(format!("{sha:?} is not a SHA-256 (64 hex digits)")));
            }
            let size: u64 = size
                .parse()
                .map_err(|_| err(format!("size {size:?} is not a byte count")))?;
            let archive = Archive::from_name(archive).ok_or_else(|| {
                err(format!(
                    "archive {archive:?}: expected debian or debian-security"
                ))
            })?;
            let suites: Vec<String> = suites.split(',').map(String::from).collect();
            if let Some(bad) = suites.iter().find(|s| !suite_ok(archive, s)) {
                return Err(err(format!(
                    "suite {bad:?} is not one of {}'s ({})",
                    archive.name(),
                    archive.suites().join(", ")
                )));
            }
            if !path_ok(path) {
                return Err(err(format!(
                    "{path:?} is not a pool path (pool/COMPONENT/.../FILE.deb)"
                )));
            }
            if entries
                .iter()
                .any(|e| e.archive == archive && e.path == path)
            {
                return Err(LockError::Duplicate {
                    line,
                    path: path.to_string(),
                });
            }
            entries.push(LockedDeb {
                sha256,
                size,
                archive,
                suites,
                path: path.to_string(),
            });
        }
        if entries.is_empty() {
            return Err(LockError::Empty);
        }
        entries.sort_by(|a, b| (a.archive, &a.path).cmp(&(b.archive, &b.path)));
        Ok(PackageLock { entries })
    }

    /// The lock file text: `header` lines (each prefixed with `# `), then
    /// the entries in order.
    pub fn render(&self, header: &[String]) -> String {
        let mut s = String::new();
        for h in header {
            let _ = writeln!(s, "# {h}");
        }
        for e in &self.entries {
            let _ = writeln!(
                s,
                "{} {} {} {} {}",
                e.sha256_hex(),
                e.size,
                e.archive.name(),
                e.suites.join(","),
                e.path
            );
        }
        s
    }

    /// Total size of the locked files in bytes.
    pub fn total_bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }

    /// The entries listed in `archive`'s `suite` under `component`.
    pub fn index<'a>(
        &'a self,
        archive: Archive,
        suite: &'a str,
        component: &'a str,
    ) -> impl Iterator<Item = &'a LockedDeb> + 'a {
        self.entries.iter().filter(move |e| {
            e.archive == archive
                && e.component() == component
                && e.suites.iter().any(|s| s == suite)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn round_trip_and_order() {
        let text = format!(
            "# lock\n{SHA} 10 debian-security trixie-security pool/updated/main/o/openssl/libssl3t64_3.5_amd64.deb\n\
             {SHA} 20 debian trixie pool/main/s/systemd/systemd_257_amd64.deb\n\
             {SHA} 30 debian trixie,trixie-updates pool/main/b/base-files/base-files_13_amd64.deb\n"
        );
        // pool/updated/... is no component: refused, named by line.
        let e = PackageLock::parse(&text).unwrap_err();
        assert!(matches!(e, LockError::Line { line: 2, .. }), "{e}");
        let text = text.replace("pool/updated/main", "pool/updates/main");
        let lock = PackageLock::parse(&text).unwrap();
        assert_eq!(lock.entries.len(), 3);
        assert_eq!(
            lock.entries[0].path,
            "pool/main/b/base-files/base-files_13_amd64.deb"
        );
        assert_eq!(lock.entries[2].archive, Archive::DebianSecurity);
        assert_eq!(lock.entries[2].component(), "main");
        assert_eq!(
            lock.index(Archive::DebianSecurity, "trixie-security", "main")
                .count(),
            1
        );
        assert_eq!(lock.total_bytes(), 60);
        assert_eq!(
            lock.index(Archive::Debian, "trixie-updates", "main")
                .count(),
            1
        );
        assert_eq!(lock.index(Archive::Debian, "trixie", "main").count(), 2);
        let again = PackageLock::parse(&lock.render(&["h".into()])).unwrap();
        assert_eq!(again, lock);
    }

    #[test]
    fn bad_lines_are_named() {
        let cases = [
            (format!("{SHA} 1 debian trixie"), "expected 5 fields"),
            (
                "xyz 1 debian trixie pool/main/a/a/a.deb".to_string(),
                "not a SHA-256",
            ),
            (
                format!("{SHA} -1 debian trixie pool/main/a/a/a.deb"),
                "not a byte count",
            ),
            (
                format!("{SHA} 1 ubuntu trixie pool/main/a/a/a.deb"),
                "archive",
            ),
            (
                format!("{SHA} 1 debian sid pool/main/a/a/a.deb"),
                "suite \"sid\"",
            ),
            (
                format!("{SHA} 1 debian-security trixie pool/main/a/a/a.deb"),
                "suite \"trixie\"",
            ),
            (
                format!("{SHA} 1 debian trixie pool/main/../a/a.deb"),
                "pool path",
            ),
            (format!("{SHA} 1 debian trixie /etc/passwd"), "pool path"),
            (
                format!("{SHA} 1 debian trixie pool/main/a/a/a.tar"),
                "pool path",
            ),
        ];
        for (line, want) in cases {
            let e = PackageLock::parse(&line).unwrap_err().to_string();
            assert!(e.contains(want), "{line}: {e}");
            assert!(e.starts_with("line 1:"), "{e}");
        }
        let dup = format!("{SHA} 1 debian trixie pool/main/a/a/a.deb\n{SHA} 1 debian trixie pool/main/a/a/a.deb\n");
        assert!(matches!(
            PackageLock::parse(&dup),
            Err(LockError::Duplicate { line: 2, .. })
        ));
        assert_eq!(
            PackageLock::parse("# only a comment\n"),
            Err(LockError::Empty)
        );
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC*") {
            let _ = PackageLock::parse(&s);
        }

        #[test]
        fn parse_never_panics_on_near_lines(
            size in "[0-9-]{0,25}",
            archive in "(debian|debian-security|x)",
            suites in "[a-z,-]{0,30}",
            path in "[a-z/._+~%-]{0,40}",
        ) {
            let _ = PackageLock::parse(&format!("{SHA} {size} {archive} {suites} {path}"));
        }
    }
}
