//! The loopback Debian mirror an image build installs from, in one of two
//! modes:
//!
//! - **locked** ([`Mirror::serve_locked`]): serves exactly the `.deb` files of
//!   a [`PackageLock`], each checked against its SHA-256 and size before the
//!   server starts, with `Packages` and `Release` indices generated from them
//!   (control fields by `dpkg-deb -f`). Nothing else exists on it, so apt can
//!   resolve only to the locked versions. The source list marks it
//!   `Trusted: yes`: the trust comes from the lock, which is part of the
//!   recorded commit, not from a signature;
//! - **recording** ([`Mirror::record`]): relays every request to the real
//!   archives (apt still checks Debian's signed `InRelease` and the index
//!   hashes) and records each `.deb` it relays, with the suites whose index
//!   lists it: the new lock ([`Mirror::finish_recording`]).
//!
//! Both listen on 127.0.0.1 only and stop when dropped. Verified files live
//! in a content-addressed cache (`SHA256.deb`), shared by all builds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::convert::Infallible;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use http_body_util::Full;
use hyper::body::Bytes;
use sha2::{Digest, Sha256};

use super::lock::{Archive, LockedDeb, PackageLock, COMPONENTS};

/// The real archives: where a lock's files are fetched from, and what the
/// recording mirror relays to.
#[derive(Debug, Clone)]
pub struct Upstreams {
    /// Base URL of the `debian` archive.
    pub debian: String,
    /// Base URL of the `debian-security` archive.
    pub security: String,
}

impl Upstreams {
    /// deb.debian.org, or `mirror` for the `debian` archive (and
    /// `MIRROR-security` for security when `mirror` ends in `/debian`).
    pub fn new(mirror: Option<&str>) -> Self {
        match mirror {
            Some(m) => {
                let m = m.trim_end_matches('/');
                let security = if m.ends_with("/debian") {
                    format!("{m}-security")
                } else {
                    "http://deb.debian.org/debian-security".to_string()
                };
                Upstreams {
                    debian: m.to_string(),
                    security,
                }
            }
            None => Upstreams {
                debian: "http://deb.debian.org/debian".into(),
                security: "http://deb.debian.org/debian-security".into(),
            },
        }
    }

    /// Base URL of `archive`.
    pub fn base(&self, archive: Archive) -> &str {
        match archive {
            Archive::Debian => &self.debian,
            Archive::DebianSecurity => &self.security,
        }
    }

    /// Where a locked file is expected.
    pub fn url(&self, e: &LockedDeb) -> String {
        format!("{}/{}", self.base(e.archive), e.path)
    }
}

/// Where `e` lives in the content-addressed cache.
pub fn cached_path(cache: &Path, e: &LockedDeb) -> PathBuf {
    cache.join(format!("{}.deb", e.sha256_hex()))
}

/// True when `path` has `e`'s size and SHA-256.
fn file_matches(path: &Path, e: &LockedDeb) -> Result<bool> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(false);
    };
    if meta.len() != e.size {
        return Ok(false);
    }
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match f.read(&mut buf)? {
            0 => break,
            n => h.update(&buf[..n]),
        }
    }
    let got: [u8; 32] = h.finalize().into();
    Ok(got == e.sha256)
}

/// A pinned input that could not be had, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unavailable {
    /// What kind of input: a locked package, or a prerequisite of the
    /// build (a tool, the recorded commit, disk space, ...). Only missing
    /// packages call for another mirror or a new release.
    pub kind: UnavailableKind,
    /// The pool path from the lock, or the prerequisite's name.
    pub path: String,
    /// Where it was expected.
    pub url: String,
    /// What happened (`HTTP 404`, `SHA-256 differs from the lock`, ...).
    pub why: String,
}

/// See [`Unavailable::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnavailableKind {
    /// A `.deb` named by the lock.
    LockedPackage,
    /// Anything else the build needs before it starts.
    Prerequisite,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(900)))
        .http_status_as_error(true)
        .build()
        .into()
}

/// Reads a whole response body (no size limit: kernel and driver packages
/// are hundreds of MB).
fn read_body(resp: &mut ureq::http::Response<ureq::Body>) -> Result<Vec<u8>, ureq::Error> {
    resp.body_mut().with_config().limit(u64::MAX).read_to_vec()
}

/// Makes every locked file present and checked in `cache`, fetching what is
/// missing from `upstreams`. Returns the files that could not be had (all
/// of them, not only the first); an empty list means the build may start.
pub fn fetch_all(
    lock: &PackageLock,
    cache: &Path,
    upstreams: &Upstreams,
) -> Result<Vec<Unavailable>> {
    std::fs::create_dir_all(cache).with_context(|| cache.display().to_string())?;
    let mut todo = Vec::new();
    for e in &lock.entries {
        if !file_matches(&cached_path(cache, e), e)? {
            todo.push(e);
        }
    }
    let mut missing = Vec::new();
    if todo.is_empty() {
        return Ok(missing);
    }
    let bytes: u64 = todo.iter().map(|e| e.size).sum();
    let pb = indicatif::ProgressBar::new(bytes);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} fetching locked packages {bytes}/{total_bytes} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let agent = agent();
    for e in todo {
        let url = upstreams.url(e);
        pb.set_message(e.file_name().to_string());
        let fail = |why: String| Unavailable {
            kind: UnavailableKind::LockedPackage,
            path: e.path.clone(),
            url: url.clone(),
            why,
        };
        let body = match agent.get(&url).call() {
            Ok(mut r) => read_body(&mut r),
            Err(err) => Err(err),
        };
        match body {
            Ok(data) => {
                let sha: [u8; 32] = Sha256::digest(&data).into();
                if data.len() as u64 != e.size || sha != e.sha256 {
                    missing.push(fail(format!(
                        "fetched {} bytes with SHA-256 {}, the lock says {} bytes {}",
                        data.len(),
                        hex::encode(sha),
                        e.size,
                        e.sha256_hex()
                    )));
                } else {
                    write_atomic(&cached_path(cache, e), &data)?;
                }
            }
            Err(ureq::Error::StatusCode(code)) => missing.push(fail(format!("HTTP {code}"))),
            Err(err) => missing.push(fail(err.to_string())),
        }
        pb.inc(e.size);
    }
    pb.finish_and_clear();
    Ok(missing)
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let part = path.with_extension("part");
    {
        let mut f = std::fs::File::create(&part).with_context(|| part.display().to_string())?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&part, path)?;
    Ok(())
}

/// The `Release` file of one generated suite.
fn release_file(suite: &str, indices: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut s = format!(
        "Origin: Debian\nLabel: Chrysalis package lock\nSuite: {suite}\nCodename: {suite}\n\
         Date: Thu, 01 Jan 1970 00:00:00 UTC\nArchitectures: amd64\nComponents: {}\n",
        COMPONENTS.join(" ")
    );
    // As Debian's own backports Release: nothing from there unless asked
    // for (image/sandbox's preferences pin the kernel and driver to it).
    if suite.ends_with("-backports") {
        s.push_str("NotAutomatic: yes\nButAutomaticUpgrades: yes\n");
    }
    s.push_str("SHA256:\n");
    for (name, data) in indices {
        s.push_str(&format!(
            " {} {} {name}\n",
            hex::encode(Sha256::digest(data)),
            data.len()
        ));
    }
    s.into_bytes()
}

/// `dpkg-deb -f FILE`: the package's control fields, verbatim.
fn control_fields(deb: &Path) -> Result<String> {
    let o = Command::new("dpkg-deb")
        .arg("-f")
        .arg(deb)
        .stderr(Stdio::piped())
        .output()
        .context("running dpkg-deb (package dpkg) to index the locked packages")?;
    if !o.status.success() {
        bail!(
            "dpkg-deb -f {}: {}",
            deb.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    let text = String::from_utf8(o.stdout).context("dpkg-deb printed non-UTF-8 control fields")?;
    Ok(text.trim_end().to_string())
}

/// Every path the locked mirror serves, with its bytes or its file.
fn locked_tree(lock: &PackageLock, cache: &Path) -> Result<HashMap<String, Served>> {
    let mut tree = HashMap::new();
    let mut control = HashMap::new();
    for e in &lock.entries {
        let file = cached_path(cache, e);
        control.insert((e.archive, e.path.clone()), control_fields(&file)?);
        tree.insert(
            format!("/{}/{}", e.archive.name(), e.path),
            Served::File(file),
        );
    }
    for archive in Archive::ALL {
        for suite in archive.suites() {
            let mut indices = Vec::new();
            for component in COMPONENTS {
                let mut packages = String::new();
                for e in lock.index(archive, suite, component) {
                    packages.push_str(&control[&(archive, e.path.clone())]);
                    packages.push_str(&format!(
                        "\nFilename: {}\nSize: {}\nSHA256: {}\n\n",
                        e.path,
                        e.size,
                        e.sha256_hex()
                    ));
                }
                let name = format!("{component}/binary-amd64/Packages");
                tree.insert(
                    format!("/{}/dists/{suite}/{name}", archive.name()),
                    Served::Bytes(Bytes::from(packages.clone())),
                );
                indices.push((name, packages.into_bytes()));
            }
            tree.insert(
                format!("/{}/dists/{suite}/Release", archive.name()),
                Served::Bytes(Bytes::from(release_file(suite, &indices))),
            );
        }
    }
    Ok(tree)
}

#[derive(Clone)]
enum Served {
    File(PathBuf),
    Bytes(Bytes),
}

/// What the recording mirror saw.
#[derive(Default)]
struct Recording {
    /// Relayed `.deb` files: (archive, pool path) → (SHA-256, size).
    debs: BTreeMap<(Archive, String), ([u8; 32], u64)>,
    /// Relayed binary-package indices: (archive, suite, raw body).
    indices: Vec<(Archive, String, Vec<u8>)>,
    /// Requests the upstream refused or failed (path, why).
    failures: Vec<(String, String)>,
}

enum Mode {
    Locked(HashMap<String, Served>),
    Record {
        upstreams: Upstreams,
        cache: PathBuf,
        agent: ureq::Agent,
        recording: Arc<Mutex<Recording>>,
    },
}

/// A running loopback mirror (stops when dropped).
pub struct Mirror {
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    recording: Option<Arc<Mutex<Recording>>>,
}

/// The `dists/SUITE/...` suite of an index request under binary-amd64, if it is one.
fn index_suite(rest: &str) -> Option<String> {
    let mut parts = rest.split('/');
    if parts.next()? != "dists" {
        return None;
    }
    let suite = parts.next()?;
    let _component = parts.next()?;
    let arch = parts.next()?;
    let leaf = parts.next()?;
    (arch == "binary-amd64" && (leaf.starts_with("Packages") || leaf == "by-hash"))
        .then(|| suite.to_string())
}

impl Mirror {
    /// Serves exactly `lock`'s files from `cache` (all must be present and
    /// checked: run [`fetch_all`] first).
    pub fn serve_locked(lock: &PackageLock, cache: &Path) -> Result<Mirror> {
        for e in &lock.entries {
            if !file_matches(&cached_path(cache, e), e)? {
                bail!(
                    "{}: not in the package cache or differs from the lock",
                    e.path
                );
            }
        }
        let tree = locked_tree(lock, cache)?;
        Self::start(Mode::Locked(tree), None)
    }

    /// Relays to `upstreams` and records every `.deb` (kept in `cache`).
    pub fn record(upstreams: Upstreams, cache: &Path) -> Result<Mirror> {
        std::fs::create_dir_all(cache)?;
        let recording = Arc::new(Mutex::new(Recording::default()));
        Self::start(
            Mode::Record {
                upstreams,
                cache: cache.to_path_buf(),
                agent: agent(),
                recording: recording.clone(),
            },
            Some(recording),
        )
    }

    fn start(mode: Mode, recording: Option<Arc<Mutex<Recording>>>) -> Result<Mirror> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let mode = Arc::new(mode);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let thread = std::thread::spawn(move || {
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                loop {
                    let accepted = tokio::select! {
                        _ = &mut stopped => break,
                        a = listener.accept() => a,
                    };
                    let Ok((tcp, _)) = accepted else { continue };
                    let mode = mode.clone();
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req| {
                            let mode = mode.clone();
                            async move { Ok::<_, Infallible>(handle(mode, req).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                            .await;
                    });
                }
            });
        });
        Ok(Mirror {
            port,
            stop: Some(stop),
            thread: Some(thread),
            recording,
        })
    }

    /// `http://127.0.0.1:PORT/ARCHIVE`.
    pub fn url(&self, archive: Archive) -> String {
        format!("http://127.0.0.1:{}/{}", self.port, archive.name())
    }

    /// The deb822 source list naming this mirror for every suite of the
    /// image's list (`trusted`: locked mode, no signature; else Debian's
    /// keyring checks what the recording mirror relays).
    pub fn sources(&self, trusted: bool) -> String {
        let mut s = String::from(
            "# Written by chrysalis image build: the loopback mirror of this build.\n",
        );
        for a in Archive::ALL {
            s.push_str(&format!(
                "\nTypes: deb\nURIs: {}\nSuites: {}\nComponents: {}\n{}\n",
                self.url(a),
                a.suites().join(" "),
                COMPONENTS.join(" "),
                if trusted {
                    "Trusted: yes"
                } else {
                    "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
                }
            ));
        }
        s
    }

    /// Stops a recording mirror and returns the lock of every `.deb` it
    /// relayed, each with the suites whose relayed index lists it.
    pub fn finish_recording(mut self) -> Result<PackageLock> {
        self.shutdown();
        let rec = self.recording.take().context("not a recording mirror")?;
        let rec = std::mem::take(&mut *rec.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
        if !rec.failures.is_empty() {
            let list: Vec<String> = rec
                .failures
                .iter()
                .map(|(p, w)| format!("{p}: {w}"))
                .collect();
            eprintln!(
                "note: the upstream refused {} request(s) during recording (apt retries other index forms; these are not in the lock):\n  {}",
                list.len(),
                list.join("\n  ")
            );
        }
        // Which suites list each pool path.
        let mut listed: HashMap<(Archive, String), BTreeSet<String>> = HashMap::new();
        for (archive, suite, body) in &rec.indices {
            let text = decompress(body)?;
            for line in text.lines() {
                if let Some(f) = line.strip_prefix("Filename: ") {
                    listed
                        .entry((*archive, f.trim().to_string()))
                        .or_default()
                        .insert(suite.clone());
                }
            }
        }
        let mut text = String::new();
        for ((archive, path), (sha, size)) in &rec.debs {
            let Some(suites) = listed.get(&(*archive, path.clone())) else {
                bail!(
                    "{path} was fetched but no relayed index of {} lists it",
                    archive.name()
                );
            };
            let suites: Vec<&str> = suites.iter().map(String::as_str).collect();
            text.push_str(&format!(
                "{} {size} {} {} {path}\n",
                hex::encode(sha),
                archive.name(),
                suites.join(",")
            ));
        }
        PackageLock::parse(&text).map_err(|e| {
            // Keep what was recorded, so a rule fix needs no second build.
            let keep = std::env::temp_dir().join("chrysalis-recorded.lock");
            let _ = std::fs::write(&keep, &text);
            anyhow::anyhow!("the recorded lock ({} kept): {e}", keep.display())
        })
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// An index body as apt fetched it: xz, gzip or plain.
fn decompress(body: &[u8]) -> Result<String> {
    let tool = if body.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Some("xz")
    } else if body.starts_with(&[0x1f, 0x8b]) {
        Some("gzip")
    } else {
        None
    };
    let Some(tool) = tool else {
        return Ok(String::from_utf8_lossy(body).into_owned());
    };
    let mut child = Command::new(tool)
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {tool} to read a package index"))?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let data = body.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output()?;
    let _ = writer.join();
    if !out.status.success() {
        bail!("{tool} -dc failed on a relayed package index");
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn respond(status: u16, body: Bytes) -> hyper::Response<Full<Bytes>> {
    let mut r = hyper::Response::new(Full::new(body));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_GATEWAY);
    r
}

async fn handle(
    mode: Arc<Mode>,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    if req.method() != hyper::Method::GET {
        return respond(405, Bytes::new());
    }
    // apt percent-encodes file names (`+` as `%2b`); the lock and the
    // indices name them decoded.
    let raw = req.uri().path().to_string();
    let Ok(path) = percent_encoding::percent_decode_str(&raw).decode_utf8() else {
        return respond(404, Bytes::new());
    };
    let path = path.into_owned();
    match &*mode {
        Mode::Locked(tree) => match tree.get(&path).cloned() {
            Some(Served::Bytes(b)) => respond(200, b),
            Some(Served::File(f)) => {
                match tokio::task::spawn_blocking(move || std::fs::read(f)).await {
                    Ok(Ok(data)) => respond(200, Bytes::from(data)),
                    _ => respond(500, Bytes::new()),
                }
            }
            None => respond(404, Bytes::new()),
        },
        Mode::Record { .. } => {
            let mode = mode.clone();
            tokio::task::spawn_blocking(move || relay(&mode, &raw, &path))
                .await
                .unwrap_or_else(|_| respond(500, Bytes::new()))
        }
    }
}

/// Recording mode: fetch `raw` (the path as requested) upstream, record it
/// under `path` (decoded), pass it on.
fn relay(mode: &Mode, raw: &str, path: &str) -> hyper::Response<Full<Bytes>> {
    let Mode::Record {
        upstreams,
        cache,
        agent,
        recording,
    } = mode
    else {
        return respond(500, Bytes::new());
    };
    let trimmed = path.trim_start_matches('/');
    let Some((archive, rest)) = trimmed
        .split_once('/')
        .and_then(|(a, r)| Some((Archive::from_name(a)?, r)))
    else {
        return respond(404, Bytes::new());
    };
    if rest.split('/').any(|s| s == ".." || s.is_empty()) {
        return respond(404, Bytes::new());
    }
    let raw_rest = raw
        .trim_start_matches('/')
        .split_once('/')
        .map_or("", |(_, r)| r);
    let url = format!("{}/{raw_rest}", upstreams.base(archive));
    let fail = |why: String| {
        if let Ok(mut r) = recording.lock() {
            r.failures.push((path.to_string(), why));
        }
    };
    let body = match agent.get(&url).call() {
        Ok(mut r) => read_body(&mut r),
        Err(e) => Err(e),
    };
    let data = match body {
        Ok(d) => d,
        Err(ureq::Error::StatusCode(code)) => {
            fail(format!("HTTP {code}"));
            return respond(code, Bytes::new());
        }
        Err(e) => {
            fail(e.to_string());
            return respond(502, Bytes::new());
        }
    };
    if rest.starts_with("pool/") && rest.ends_with(".deb") {
        let sha: [u8; 32] = Sha256::digest(&data).into();
        let file = cache.join(format!("{}.deb", hex::encode(sha)));
        if !file.exists() && write_atomic(&file, &data).is_err() {
            return respond(500, Bytes::new());
        }
        if let Ok(mut r) = recording.lock() {
            r.debs
                .insert((archive, rest.to_string()), (sha, data.len() as u64));
        }
    } else if let Some(suite) = index_suite(rest) {
        if let Ok(mut r) = recording.lock() {
            r.indices.push((archive, suite, data.clone()));
        }
    }
    respond(200, Bytes::from(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds `NAME_VERSION_ARCH.deb` with dpkg-deb into `dir`; returns its lock line.
    fn make_deb(dir: &Path, name: &str, version: &str, arch: &str, suites: &str) -> String {
        let tree = dir.join(format!("{name}-tree"));
        std::fs::create_dir_all(tree.join("DEBIAN")).unwrap();
        std::fs::create_dir_all(tree.join("usr/share")).unwrap();
        std::fs::write(tree.join("usr/share").join(name), name).unwrap();
        std::fs::write(
            tree.join("DEBIAN/control"),
            format!("Package: {name}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: t <t@t>\nDescription: test {name}\n"),
        )
        .unwrap();
        let file = dir.join(format!("{name}_{version}_{arch}.deb"));
        let ok = Command::new("dpkg-deb")
            .args(["--build", "--root-owner-group", "-Zgzip"])
            .arg(&tree)
            .arg(&file)
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "dpkg-deb --build");
        let data = std::fs::read(&file).unwrap();
        format!(
            "{} {} debian {suites} pool/main/{}/{name}/{name}_{version}_{arch}.deb",
            hex::encode(Sha256::digest(&data)),
            data.len(),
            &name[..1]
        )
    }

    fn get(url: &str) -> Result<Vec<u8>, u16> {
        match agent().get(url).call() {
            Ok(mut r) => Ok(read_body(&mut r).unwrap()),
            Err(ureq::Error::StatusCode(c)) => Err(c),
            Err(e) => panic!("{e}"),
        }
    }

    fn have_dpkg_deb() -> bool {
        Command::new("dpkg-deb").arg("--version").output().is_ok()
    }

    /// A lock served by one mirror is fetched and served again by another:
    /// exact files only, indices generated, missing and altered files named,
    /// and a recording mirror in front of it records the same lock.
    #[test]
    fn locked_mirror_fetch_serve_and_record() {
        if !have_dpkg_deb() {
            eprintln!("SKIP: dpkg-deb (package dpkg) not installed");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let debs = t.path().join("debs");
        std::fs::create_dir_all(&debs).unwrap();
        let lines = [
            make_deb(&debs, "alpha", "1.0+b1", "amd64", "trixie"),
            make_deb(&debs, "beta", "2.0", "all", "trixie,trixie-backports"),
        ];
        let lock = PackageLock::parse(&lines.join("\n")).unwrap();
        // The "upstream": a locked mirror over a cache seeded by hand.
        let upstream_cache = t.path().join("upstream-cache");
        std::fs::create_dir_all(&upstream_cache).unwrap();
        for e in &lock.entries {
            std::fs::copy(debs.join(e.file_name()), cached_path(&upstream_cache, e)).unwrap();
        }
        let upstream = Mirror::serve_locked(&lock, &upstream_cache).unwrap();
        let ups = Upstreams {
            debian: upstream.url(Archive::Debian),
            security: upstream.url(Archive::DebianSecurity),
        };

        // Fetch into an empty cache: both files, checked.
        let cache = t.path().join("cache");
        assert_eq!(fetch_all(&lock, &cache, &ups).unwrap(), vec![]);
        for e in &lock.entries {
            assert!(file_matches(&cached_path(&cache, e), e).unwrap());
        }

        // The served indices: each package in its suites only, with the
        // locked hash; backports not automatic; nothing unlocked exists.
        let packages = String::from_utf8(
            get(&format!(
                "{}/dists/trixie/main/binary-amd64/Packages",
                ups.debian
            ))
            .unwrap(),
        )
        .unwrap();
        assert!(
            packages.contains("Package: alpha\nVersion: 1.0+b1\n"),
            "{packages}"
        );
        assert!(packages.contains(&format!("SHA256: {}\n", lock.entries[0].sha256_hex())));
        let bp = String::from_utf8(
            get(&format!(
                "{}/dists/trixie-backports/main/binary-amd64/Packages",
                ups.debian
            ))
            .unwrap(),
        )
        .unwrap();
        assert!(
            bp.contains("Package: beta") && !bp.contains("Package: alpha"),
            "{bp}"
        );
        let release = String::from_utf8(
            get(&format!("{}/dists/trixie-backports/Release", ups.debian)).unwrap(),
        )
        .unwrap();
        assert!(release.contains("NotAutomatic: yes"));
        assert!(release.contains(&hex::encode(Sha256::digest(bp.as_bytes()))));
        assert_eq!(
            get(&format!(
                "{}/pool/main/g/gamma/gamma_1_amd64.deb",
                ups.debian
            )),
            Err(404)
        );
        assert_eq!(
            get(&format!("{}/dists/trixie/InRelease", ups.debian)),
            Err(404)
        );
        assert_eq!(
            get(&format!("{}/{}", ups.debian, lock.entries[0].path)).unwrap(),
            std::fs::read(debs.join(lock.entries[0].file_name())).unwrap()
        );

        // A lock naming a file the upstream lacks, and one whose hash was
        // altered: both named, with where they were expected and why.
        let sha0 = lock.entries[0].sha256_hex();
        let altered = lines[0].replacen(
            &sha0[..4],
            if &sha0[..4] == "0000" { "1111" } else { "0000" },
            1,
        );
        let gamma = format!(
            "{} 3 debian trixie pool/main/g/gamma/gamma_1_amd64.deb",
            "ab".repeat(32)
        );
        let bad = PackageLock::parse(&format!("{altered}\n{}\n{gamma}\n", lines[1])).unwrap();
        let fresh = t.path().join("fresh");
        let missing = fetch_all(&bad, &fresh, &ups).unwrap();
        assert_eq!(missing.len(), 2, "{missing:?}");
        let by_path: HashMap<&str, &Unavailable> =
            missing.iter().map(|m| (m.path.as_str(), m)).collect();
        let g = by_path["pool/main/g/gamma/gamma_1_amd64.deb"];
        assert_eq!(g.why, "HTTP 404");
        assert_eq!(
            g.url,
            format!("{}/pool/main/g/gamma/gamma_1_amd64.deb", ups.debian)
        );
        assert!(by_path[lock.entries[0].path.as_str()]
            .why
            .contains("the lock says"));
        assert!(
            !cached_path(&fresh, &bad.entries[0]).exists(),
            "an unchecked file was kept"
        );
        // Serving refuses a cache that does not hold every locked file.
        assert!(Mirror::serve_locked(&bad, &fresh).is_err());

        // Recording in front of the upstream: what apt would fetch is
        // relayed and becomes the same lock.
        let rec = Mirror::record(ups.clone(), &t.path().join("rec-cache")).unwrap();
        let base = rec.url(Archive::Debian);
        for suite in ["trixie", "trixie-backports"] {
            get(&format!("{base}/dists/{suite}/main/binary-amd64/Packages")).unwrap();
        }
        for e in &lock.entries {
            // As apt asks: `+` percent-encoded.
            get(&format!("{base}/{}", e.path.replace('+', "%2b"))).unwrap();
        }
        assert_eq!(get(&format!("{base}/../etc/passwd")), Err(404));
        assert_eq!(rec.finish_recording().unwrap(), lock);
    }

    /// apt itself accepts the generated repository and installs only what
    /// is locked (skipped where apt-get is not installed).
    #[test]
    fn apt_resolves_from_the_locked_mirror() {
        if !have_dpkg_deb() || Command::new("apt-get").arg("--version").output().is_err() {
            eprintln!("SKIP: apt-get/dpkg-deb not installed");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let debs = t.path().join("debs");
        std::fs::create_dir_all(&debs).unwrap();
        let lines = [
            make_deb(&debs, "alpha", "1.0", "amd64", "trixie"),
            make_deb(&debs, "beta", "2.0", "all", "trixie-backports"),
        ];
        let lock = PackageLock::parse(&lines.join("\n")).unwrap();
        let cache = t.path().join("cache");
        std::fs::create_dir_all(&cache).unwrap();
        for e in &lock.entries {
            std::fs::copy(debs.join(e.file_name()), cached_path(&cache, e)).unwrap();
        }
        let m = Mirror::serve_locked(&lock, &cache).unwrap();
        let etc = t.path().join("etc");
        std::fs::create_dir_all(etc.join("sources.list.d")).unwrap();
        std::fs::create_dir_all(etc.join("preferences.d")).unwrap();
        std::fs::write(etc.join("sources.list.d/mkosi.sources"), m.sources(true)).unwrap();
        for d in ["state/lists/partial", "cache/archives/partial", "dl"] {
            std::fs::create_dir_all(t.path().join(d)).unwrap();
        }
        std::fs::write(t.path().join("status"), "").unwrap();
        let apt = |args: &[&str]| {
            Command::new("apt-get")
                .current_dir(t.path().join("dl"))
                .arg(format!("-oDir::Etc={}", etc.display()))
                .arg(format!("-oDir::State={}", t.path().join("state").display()))
                .arg(format!(
                    "-oDir::Cache={}",
                    t.path().join("cache-apt").display()
                ))
                .arg(format!(
                    "-oDir::State::Status={}",
                    t.path().join("status").display()
                ))
                .args([
                    "-oAPT::Architecture=amd64",
                    "-oDebug::NoLocking=1",
                    "-oAPT::Sandbox::User=root",
                ])
                .args(args)
                .output()
                .unwrap()
        };
        let up = apt(&["update"]);
        assert!(
            up.status.success(),
            "{}",
            String::from_utf8_lossy(&up.stderr)
        );
        // beta only in backports (NotAutomatic): found when asked for there.
        let dl = apt(&["download", "alpha", "beta/trixie-backports"]);
        assert!(
            dl.status.success(),
            "{}",
            String::from_utf8_lossy(&dl.stderr)
        );
        for e in &lock.entries {
            assert!(file_matches(&t.path().join("dl").join(e.file_name()), e).unwrap());
        }
        let none = apt(&["download", "gamma"]);
        assert!(!none.status.success());
    }

    #[test]
    fn index_requests_are_recognised() {
        assert_eq!(
            index_suite("dists/trixie/main/binary-amd64/Packages.xz").as_deref(),
            Some("trixie")
        );
        assert_eq!(
            index_suite("dists/trixie-security/main/binary-amd64/by-hash/SHA256/ab").as_deref(),
            Some("trixie-security")
        );
        assert_eq!(index_suite("dists/trixie/InRelease"), None);
        assert_eq!(index_suite("dists/trixie/main/i18n/Translation-en"), None);
        assert_eq!(index_suite("pool/main/a/a/a.deb"), None);
    }

    #[test]
    fn upstreams_follow_the_mirror() {
        let u = Upstreams::new(Some("http://mirror.example/debian/"));
        assert_eq!(u.debian, "http://mirror.example/debian");
        assert_eq!(u.security, "http://mirror.example/debian-security");
        let d = Upstreams::new(None);
        assert_eq!(
            d.base(Archive::DebianSecurity),
            "http://deb.debian.org/debian-security"
        );
    }

    #[test]
    fn backports_release_is_not_automatic() {
        let r = String::from_utf8(release_file(
            "trixie-backports",
            &[("main/binary-amd64/Packages".into(), b"x".to_vec())],
        ))
        .unwrap();
        assert!(r.contains("Codename: trixie-backports\n"));
        assert!(r.contains("NotAutomatic: yes\n"));
        assert!(r.contains(&format!(
            " {} 1 main/binary-amd64/Packages\n",
            hex::encode(Sha256::digest(b"x"))
        )));
        let t = String::from_utf8(release_file("trixie", &[])).unwrap();
        assert!(!t.contains("NotAutomatic"));
    }
}
