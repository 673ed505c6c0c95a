//! Evidence through Linux configfs-tsm (`/sys/kernel/config/tsm/report`).
//!
//! configfs-tsm (Linux ≥ 6.7, `CONFIG_TSM_REPORTS`) is one file protocol for
//! every TEE: user space creates a report entry with `mkdir`, writes the
//! 64-byte report data to its `inblob` attribute, and reads the evidence from
//! `outblob`. The kernel's TEE driver (`tdx_guest`, `sev_guest`) does the
//! rest, including, for TDX, the round trip to the host's Quote Generation
//! Service that the older `/dev/tdx_guest` ioctl cannot do.
//!
//! Entries are shared kernel objects, so anyone who can write to the entry
//! can change its inputs between our write and our read. The kernel counts
//! every write in the entry's `generation` attribute; this provider reads it
//! before and after and rejects the evidence if it saw writes other than its
//! own. It also creates a fresh, uniquely named entry per request (process
//! id + counter) and removes it afterwards, so well-behaved concurrent users
//! never share one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrysalis_attestation::error::{Error, Result};
use chrysalis_attestation::provider::{EvidenceProvider, RawEvidence};
use chrysalis_attestation::verified::Tee;

/// Where the kernel exposes configfs-tsm report entries when configfs is
/// mounted at its usual place.
pub const DEFAULT_ROOT: &str = "/sys/kernel/config/tsm/report";

/// Largest `outblob` accepted, in bytes (64 KiB). A TDX quote with its PCK
/// certificate chain is about 5 KiB and an SNP report is 1184 bytes, and
/// current kernels cap outblob lower still. The cap keeps a misbehaving
/// provider from making us allocate without bound.
pub const OUTBLOB_MAX: usize = 64 * 1024;

/// Largest `auxblob` accepted, in bytes (64 KiB). The SNP certificate table
/// (VCEK, ASK, ARK in DER) is a few KiB.
pub const AUXBLOB_MAX: usize = 64 * 1024;

/// Largest text attribute (`generation`, `provider`) accepted, in bytes.
const TEXT_ATTR_MAX: usize = 64;

/// Highest `privlevel` the kernel accepts (`TSM_PRIVLEVEL_MAX`): SNP VMPLs
/// are 0..=3.
pub const PRIVLEVEL_MAX: u8 = 3;

/// Every attribute file a report entry can have, for the emulated cleanup
/// (see [`TsmProvider`]); on real configfs these vanish with the entry.
const ENTRY_ATTRIBUTES: &[&str] = &[
    "inblob",
    "outblob",
    "auxblob",
    "manifestblob",
    "provider",
    "generation",
    "privlevel",
    "privlevel_floor",
    "service_provider",
    "service_guid",
    "service_manifest_version",
];

/// How long an emulated kernel may take to produce an attribute.
const EMULATION_WAIT: Duration = Duration::from_secs(2);

/// Makes entry names unique within this process; the pid makes them unique
/// across processes.
static ENTRY_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Evidence from configfs-tsm.
///
/// Construction probes the interface once (creates and removes an entry) to
/// learn which TEE driver backs it, so a `TsmProvider` that exists is one
/// whose [`EvidenceProvider::tee`] is known.
///
/// Cleanup of an entry is `rmdir` and nothing else: on configfs an entry's
/// attributes are not files that can be unlinked, and `rmdir` of a report
/// entry succeeds as soon as nobody holds it. Tests run the same code
/// against a plain directory with a thread playing the kernel; there the
/// attributes are real files, so — in emulation only — a failed `rmdir`
/// (`ENOTEMPTY`) is followed by removing the known attribute names and a
/// second `rmdir`, which is what configfs does implicitly. No recursive
/// delete is ever done: a stray file in an entry makes cleanup fail loudly
/// instead of deleting something we did not create.
#[derive(Debug)]
pub struct TsmProvider {
    root: PathBuf,
    tee: Tee,
    privlevel: Option<u8>,
    /// Test-only emulation of configfs on a plain directory (see above).
    emulated: bool,
}

impl TsmProvider {
    /// Uses the configfs-tsm report directory at `root` and learns which TEE
    /// backs it.
    ///
    /// Returns [`Error::Unsupported`] naming `root` when it does not exist or
    /// no TSM provider is registered with the kernel, and when the provider
    /// is neither `tdx_guest` nor `sev_guest`.
    pub fn new(root: PathBuf) -> Result<Self> {
        Self::open(root, false)
    }

    /// [`TsmProvider::new`] at [`DEFAULT_ROOT`].
    pub fn system() -> Result<Self> {
        Self::new(PathBuf::from(DEFAULT_ROOT))
    }

    fn open(root: PathBuf, emulated: bool) -> Result<Self> {
        let entry = Entry::create(&root, emulated)?;
        let tee = read_provider(&entry.path, emulated);
        let removed = entry.remove();
        // As in `evidence`: the probe's own error explains more.
        let tee = tee?;
        removed?;
        Ok(TsmProvider {
            root,
            tee,
            privlevel: None,
            emulated,
        })
    }

    /// Asks for evidence at privilege level `level` by writing it to the
    /// entry's `privlevel` attribute before `inblob`. On SNP this is the VMPL
    /// (0..=3) recorded in the report; it must be at least the guest's own
    /// VMPL (the kernel's `privlevel_floor`) or the kernel refuses the write.
    /// Without it the kernel uses the floor.
    pub fn with_privlevel(mut self, level: u8) -> Result<Self> {
        if level > PRIVLEVEL_MAX {
            return Err(Error::Encoding(format!(
                "configfs-tsm privlevel {level} is out of range 0..={PRIVLEVEL_MAX}"
            )));
        }
        self.privlevel = Some(level);
        Ok(self)
    }

    /// The report directory this provider creates entries in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The privilege level written to each entry, if any.
    pub fn privlevel(&self) -> Option<u8> {
        self.privlevel
    }

    /// The request protocol on one fresh entry; the caller removes it.
    fn request(&self, entry: &Path, report_data: &[u8; 64]) -> Result<RawEvidence> {
        let before = read_generation(entry, self.emulated)?;

        // privlevel before inblob: inblob is the input that completes a
        // request (and what an emulated kernel waits for), and the kernel
        // does not care about the order of the two writes.
        let mut writes = 0u64;
        if let Some(level) = self.privlevel {
            write_attr(
                entry,
                "privlevel",
                format!("{level}\n").as_bytes(),
                self.emulated,
            )?;
            writes += 1;
        }
        write_attr(entry, "inblob", report_data, self.emulated)?;
        writes += 1;

        // Reading outblob is what makes the kernel produce the evidence.
        let outblob = read_attr(entry, "outblob", OUTBLOB_MAX, self.emulated)?;
        if outblob.is_empty() {
            return Err(Error::io(
                entry.join("outblob"),
                io::Error::new(ErrorKind::UnexpectedEof, "the kernel returned no evidence"),
            ));
        }
        // auxblob is absent on kernels/TEEs that have none (TDX) and empty
        // when the host published no certificates.
        let aux = match read_optional_attr(entry, "auxblob", AUXBLOB_MAX)? {
            Some(aux) if !aux.is_empty() => Some(aux),
            _ => None,
        };
        let tee = read_provider(entry, self.emulated)?;
        if tee != self.tee {
            return Err(Error::Unsupported(format!(
                "{}: configfs-tsm provider changed from {} to {tee} since this provider was set up",
                entry.display(),
                self.tee
            )));
        }

        let after = read_generation(entry, self.emulated)?;
        let expected = before.checked_add(writes);
        if Some(after) != expected {
            return Err(Error::io(
                entry.join("generation"),
                io::Error::other(format!(
                    "generation went from {before} to {after} across our {writes} write(s): \
                     another writer raced on this report entry, so the evidence may not \
                     carry our report data; discarded"
                )),
            ));
        }

        Ok(RawEvidence {
            tee,
            bytes: outblob,
            aux,
            provider: "tsm",
        })
    }
}

impl EvidenceProvider for TsmProvider {
    fn name(&self) -> &'static str {
        "tsm"
    }

    fn extend_rtmr3(&self, digest: &[u8; 48]) -> Result<()> {
        match self.tee {
            Tee::Tdx => super::rtmr::extend_rtmr3_sysfs(
                std::path::Path::new(super::rtmr::TDX_MEASUREMENTS_DIR),
                digest,
            ),
            _ => Err(chrysalis_attestation::error::Error::Unsupported(
                "SEV-SNP has no runtime measurement register (HOST_DATA carries the host's configuration digest)".into(),
            )),
        }
    }

    fn tee(&self) -> Tee {
        self.tee
    }

    fn evidence(&self, report_data: &[u8; 64]) -> Result<RawEvidence> {
        let entry = Entry::create(&self.root, self.emulated)?;
        let result = self.request(&entry.path, report_data);
        let removed = entry.remove();
        // The request's own error explains more than a cleanup failure that
        // probably followed from it.
        let evidence = result?;
        removed?;
        Ok(evidence)
    }
}

/// One report entry directory, removed on drop if not removed explicitly
/// (so a panic in between does not leak kernel state).
struct Entry {
    path: PathBuf,
    emulated: bool,
    removed: bool,
}

impl Entry {
    fn create(root: &Path, emulated: bool) -> Result<Entry> {
        if !root.is_dir() {
            return Err(missing_root(root));
        }
        // A stale entry with our name can only come from an earlier process
        // with the same pid; skip past it rather than reuse its state.
        for _ in 0..16 {
            let n = ENTRY_COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = root.join(format!("chrysalis-{}-{n}", std::process::id()));
            match fs::create_dir(&path) {
                Ok(()) => {
                    return Ok(Entry {
                        path,
                        emulated,
                        removed: false,
                    })
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) if e.kind() == ErrorKind::NotFound => return Err(missing_root(root)),
                // tsm_report_make_item() fails with ENXIO while no TEE driver
                // has registered as the TSM provider.
                Err(e) if e.raw_os_error() == Some(nix::libc::ENXIO) => {
                    return Err(Error::Unsupported(format!(
                        "{}: configfs-tsm is present but no TSM provider is registered \
                         (load the tdx_guest or sev_guest driver)",
                        root.display()
                    )))
                }
                Err(e) => return Err(Error::io(path, e)),
            }
        }
        Err(Error::io(
            root,
            io::Error::new(
                ErrorKind::AlreadyExists,
                "could not create a fresh report entry: 16 names in a row already taken",
            ),
        ))
    }

    fn remove(mut self) -> Result<()> {
        self.removed = true;
        remove_entry(&self.path, self.emulated)
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        if !self.removed {
            let _ = remove_entry(&self.path, self.emulated);
        }
    }
}

fn remove_entry(path: &Path, emulated: bool) -> Result<()> {
    match fs::remove_dir(path) {
        Ok(()) => Ok(()),
        // Someone removed it for us; nothing is leaked.
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) if emulated && is_not_empty(&e) => {
            for name in ENTRY_ATTRIBUTES {
                match fs::remove_file(path.join(name)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(path.join(name), e)),
                }
            }
            fs::remove_dir(path).map_err(|e| Error::io(path, e))
        }
        Err(e) => Err(Error::io(path, e)),
    }
}

fn is_not_empty(e: &io::Error) -> bool {
    // POSIX allows EEXIST for a non-empty directory too.
    matches!(
        e.raw_os_error(),
        Some(nix::libc::ENOTEMPTY) | Some(nix::libc::EEXIST)
    )
}

fn missing_root(root: &Path) -> Error {
    Error::Unsupported(format!(
        "{} does not exist: configfs-tsm needs Linux >= 6.7 built with CONFIG_TSM_REPORTS, \
         configfs mounted at /sys/kernel/config, and a TEE guest driver (tdx_guest or sev_guest)",
        root.display()
    ))
}

/// Reads `name` in full, failing if it is larger than `max` bytes. In
/// emulation a missing attribute is waited for: a real kernel creates all
/// attributes with the entry and produces `outblob` synchronously on read,
/// a user-space stand-in cannot.
fn read_attr(entry: &Path, name: &str, max: usize, emulated: bool) -> Result<Vec<u8>> {
    let path = entry.join(name);
    let deadline = Instant::now() + EMULATION_WAIT;
    loop {
        match read_bounded(&path, max) {
            Err(Error::Io { source, .. })
                if emulated
                    && source.kind() == ErrorKind::NotFound
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// Like [`read_attr`], but `None` when the kernel does not offer `name`.
fn read_optional_attr(entry: &Path, name: &str, max: usize) -> Result<Option<Vec<u8>>> {
    match read_bounded(&entry.join(name), max) {
        Ok(v) => Ok(Some(v)),
        Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn read_bounded(path: &Path, max: usize) -> Result<Vec<u8>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buf = Vec::new();
    // One byte more than allowed tells "exactly max" from "too large".
    file.take(max as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io(path, e))?;
    if buf.len() > max {
        return Err(Error::io(
            path,
            io::Error::new(
                ErrorKind::InvalidData,
                format!("larger than the {max}-byte limit"),
            ),
        ));
    }
    Ok(buf)
}

fn read_text_attr(entry: &Path, name: &str, emulated: bool) -> Result<String> {
    let raw = read_attr(entry, name, TEXT_ATTR_MAX, emulated)?;
    let text = std::str::from_utf8(&raw)
        .map_err(|_| Error::Encoding(format!("{}: not UTF-8 text", entry.join(name).display())))?;
    Ok(text.trim().to_owned())
}

/// `generation`: decimal count of writes to the entry, newline-terminated.
fn read_generation(entry: &Path, emulated: bool) -> Result<u64> {
    let text = read_text_attr(entry, "generation", emulated)?;
    text.parse().map_err(|_| {
        Error::Encoding(format!(
            "{}: {text:?} is not a decimal generation counter",
            entry.join("generation").display()
        ))
    })
}

/// `provider`: the name of the TEE driver that serves the entry.
fn read_provider(entry: &Path, emulated: bool) -> Result<Tee> {
    let name = read_text_attr(entry, "provider", emulated)?;
    tee_of_provider(&name).ok_or_else(|| {
        Error::Unsupported(format!(
            "{}: configfs-tsm provider {name:?} is not supported (expected tdx_guest or sev_guest)",
            entry.join("provider").display()
        ))
    })
}

fn tee_of_provider(name: &str) -> Option<Tee> {
    match name {
        "tdx_guest" => Some(Tee::Tdx),
        "sev_guest" => Some(Tee::Snp),
        _ => None,
    }
}

/// Writes `bytes` to attribute `name` in one `write` and closes the file:
/// configfs binary attributes (`inblob`) are committed to the driver when
/// the file is released. `O_CREAT` is used only in emulation; on configfs a
/// missing attribute must fail with `ENOENT`, not try to create a file.
fn write_attr(entry: &Path, name: &str, bytes: &[u8], emulated: bool) -> Result<()> {
    let path = entry.join(name);
    let mut file = OpenOptions::new()
        .write(true)
        .create(emulated)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    file.write_all(bytes).map_err(|e| Error::io(&path, e))?;
    drop(file);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::thread::JoinHandle;

    impl TsmProvider {
        fn emulated(root: PathBuf) -> Result<Self> {
            Self::open(root, true)
        }
    }

    /// How the emulated kernel behaves.
    #[derive(Clone)]
    struct Behaviour {
        provider: &'static str,
        aux: Option<Vec<u8>>,
        /// Extra writes "someone else" made to each entry.
        foreign_writes: u64,
        /// Size of the outblob to produce; 0 means a quote-like blob that
        /// embeds the inblob.
        outblob_len: usize,
    }

    impl Behaviour {
        fn new(provider: &'static str) -> Self {
            Behaviour {
                provider,
                aux: None,
                foreign_writes: 0,
                outblob_len: 0,
            }
        }
    }

    /// What the emulated kernel saw in one request entry.
    #[derive(Debug, Clone)]
    struct Seen {
        inblob: Vec<u8>,
        privlevel: Option<String>,
    }

    /// A thread that plays configfs-tsm on a plain directory: for each new
    /// entry it writes `generation` and `provider` (configfs has them from
    /// mkdir on), waits for a complete 64-byte `inblob`, then writes the new
    /// `generation`, `auxblob` and finally `outblob`. Files appear by rename,
    /// so readers never see half a file. It stops when told or after 2 s.
    struct Emulator {
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<Vec<Seen>>>,
        _scratch: tempfile::TempDir,
    }

    impl Emulator {
        fn start(root: &Path, b: Behaviour) -> Emulator {
            let stop = Arc::new(AtomicBool::new(false));
            let scratch = tempfile::tempdir_in(root.parent().unwrap()).unwrap();
            let (root, scratch_path, stop2) = (
                root.to_path_buf(),
                scratch.path().to_path_buf(),
                stop.clone(),
            );
            let thread = std::thread::spawn(move || run_kernel(&root, &scratch_path, &b, &stop2));
            Emulator {
                stop,
                thread: Some(thread),
                _scratch: scratch,
            }
        }

        fn finish(mut self) -> Vec<Seen> {
            self.stop.store(true, Ordering::SeqCst);
            self.thread.take().unwrap().join().unwrap()
        }
    }

    impl Drop for Emulator {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn put(scratch: &Path, entry: &Path, name: &str, bytes: &[u8]) {
        let tmp = scratch.join(format!(
            "{}-{name}",
            entry.file_name().unwrap().to_string_lossy()
        ));
        fs::write(&tmp, bytes).unwrap();
        // The entry may be gone already (a probe entry, removed at once).
        if fs::rename(&tmp, entry.join(name)).is_err() {
            let _ = fs::remove_file(&tmp);
        }
    }

    fn run_kernel(root: &Path, scratch: &Path, b: &Behaviour, stop: &AtomicBool) -> Vec<Seen> {
        let deadline = Instant::now() + Duration::from_secs(2);
        // entry path -> its generation when it was created
        let mut pending: HashMap<PathBuf, u64> = HashMap::new();
        let mut known = std::collections::HashSet::new();
        let mut seen = Vec::new();
        while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
            for dirent in fs::read_dir(root).unwrap().flatten() {
                let path = dirent.path();
                if path.is_dir() && known.insert(path.clone()) {
                    put(scratch, &path, "generation", b"0\n");
                    put(
                        scratch,
                        &path,
                        "provider",
                        format!("{}\n", b.provider).as_bytes(),
                    );
                    pending.insert(path, 0);
                }
            }
            let mut done = Vec::new();
            for (entry, generation) in &pending {
                if !entry.exists() {
                    done.push(entry.clone());
                    continue;
                }
                let Ok(inblob) = fs::read(entry.join("inblob")) else {
                    continue;
                };
                if inblob.len() < 64 {
                    continue;
                }
                let privlevel = fs::read_to_string(entry.join("privlevel")).ok();
                let writes = 1 + u64::from(privlevel.is_some()) + b.foreign_writes;
                put(
                    scratch,
                    entry,
                    "generation",
                    format!("{}\n", generation + writes).as_bytes(),
                );
                if let Some(aux) = &b.aux {
                    put(scratch, entry, "auxblob", aux);
                }
                let outblob = if b.outblob_len == 0 {
                    let mut q = b"QUOTE:".to_vec();
                    q.extend_from_slice(&inblob);
                    q
                } else {
                    vec![0xAB; b.outblob_len]
                };
                put(scratch, entry, "outblob", &outblob);
                seen.push(Seen { inblob, privlevel });
                done.push(entry.clone());
            }
            for d in done {
                pending.remove(&d);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        seen
    }

    fn setup() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("report");
        fs::create_dir(&root).unwrap();
        (dir, root)
    }

    fn assert_empty(root: &Path) {
        let left: Vec<_> = fs::read_dir(root)
            .unwrap()
            .flatten()
            .map(|d| d.path())
            .collect();
        assert!(left.is_empty(), "entries left behind: {left:?}");
    }

    fn report_data() -> [u8; 64] {
        let mut rd = [0u8; 64];
        for (i, b) in rd.iter_mut().enumerate() {
            *b = i as u8 ^ 0x5a;
        }
        rd
    }

    #[test]
    fn tdx_quote_round_trip() {
        let (_dir, root) = setup();
        let kernel = Emulator::start(&root, Behaviour::new("tdx_guest"));
        let p = TsmProvider::emulated(root.clone()).unwrap();
        assert_eq!(p.tee(), Tee::Tdx);
        assert_eq!(p.name(), "tsm");
        let rd = report_data();
        let ev = p.evidence(&rd).unwrap();
        let seen = kernel.finish();

        assert_eq!(ev.tee, Tee::Tdx);
        assert_eq!(ev.provider, "tsm");
        assert_eq!(&ev.bytes[..6], b"QUOTE:");
        assert_eq!(&ev.bytes[6..], &rd[..]);
        assert_eq!(ev.aux, None);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].inblob, rd);
        assert_eq!(seen[0].privlevel, None);
        assert_empty(&root);
    }

    #[test]
    fn snp_report_with_certificates_and_privlevel() {
        let (_dir, root) = setup();
        let mut b = Behaviour::new("sev_guest");
        b.aux = Some(b"CERT-TABLE".to_vec());
        let kernel = Emulator::start(&root, b);
        let p = TsmProvider::emulated(root.clone())
            .unwrap()
            .with_privlevel(2)
            .unwrap();
        assert_eq!(p.tee(), Tee::Snp);
        assert_eq!(p.privlevel(), Some(2));
        let ev = p.evidence(&report_data()).unwrap();
        let seen = kernel.finish();

        assert_eq!(ev.tee, Tee::Snp);
        assert_eq!(ev.aux.as_deref(), Some(&b"CERT-TABLE"[..]));
        assert_eq!(seen[0].privlevel.as_deref(), Some("2\n"));
        assert_empty(&root);
    }

    #[test]
    fn several_requests_use_fresh_entries() {
        let (_dir, root) = setup();
        let kernel = Emulator::start(&root, Behaviour::new("tdx_guest"));
        let p = TsmProvider::emulated(root.clone()).unwrap();
        for i in 0..3u8 {
            let rd = [i; 64];
            assert_eq!(&p.evidence(&rd).unwrap().bytes[6..], &rd[..]);
        }
        assert_eq!(kernel.finish().len(), 3);
        assert_empty(&root);
    }

    #[test]
    fn generation_jump_is_reported_as_a_race() {
        let (_dir, root) = setup();
        let mut b = Behaviour::new("tdx_guest");
        b.foreign_writes = 1;
        let kernel = Emulator::start(&root, b);
        let p = TsmProvider::emulated(root.clone()).unwrap();
        let err = p.evidence(&report_data()).unwrap_err();
        kernel.finish();
        let msg = err.to_string();
        assert!(msg.contains("another writer raced"), "{msg}");
        assert!(msg.contains("from 0 to 2"), "{msg}");
        // Cleanup happens on the error path too.
        assert_empty(&root);
    }

    #[test]
    fn oversized_outblob_is_refused() {
        let (_dir, root) = setup();
        let mut b = Behaviour::new("sev_guest");
        b.outblob_len = OUTBLOB_MAX + 1;
        let kernel = Emulator::start(&root, b);
        let p = TsmProvider::emulated(root.clone()).unwrap();
        let err = p.evidence(&report_data()).unwrap_err();
        kernel.finish();
        assert!(err.to_string().contains("65536-byte limit"), "{err}");
        assert_empty(&root);
    }

    #[test]
    fn exactly_max_outblob_is_accepted() {
        let (_dir, root) = setup();
        let mut b = Behaviour::new("sev_guest");
        b.outblob_len = OUTBLOB_MAX;
        let kernel = Emulator::start(&root, b);
        let p = TsmProvider::emulated(root.clone()).unwrap();
        assert_eq!(p.evidence(&report_data()).unwrap().bytes.len(), OUTBLOB_MAX);
        kernel.finish();
    }

    #[test]
    fn unknown_provider_is_unsupported() {
        let (_dir, root) = setup();
        let kernel = Emulator::start(&root, Behaviour::new("arm-cca"));
        let err = TsmProvider::emulated(root.clone()).unwrap_err();
        kernel.finish();
        assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
        assert!(err.to_string().contains("arm-cca"), "{err}");
        assert_empty(&root);
    }

    #[test]
    fn missing_root_is_unsupported_and_names_path_and_kernel() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("no/tsm/report");
        let err = TsmProvider::new(root.clone()).unwrap_err();
        assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&root.display().to_string()), "{msg}");
        assert!(msg.contains("Linux >= 6.7"), "{msg}");
        assert!(msg.contains("CONFIG_TSM_REPORTS"), "{msg}");
    }

    #[test]
    fn real_cleanup_is_rmdir_only() {
        // Outside emulation a non-empty entry is an error, never deleted
        // recursively.
        let (_dir, root) = setup();
        let entry = root.join("chrysalis-1-1");
        fs::create_dir(&entry).unwrap();
        fs::write(entry.join("stray"), b"x").unwrap();
        assert!(remove_entry(&entry, false).is_err());
        assert!(entry.join("stray").exists());
        // Emulated cleanup removes only known attribute names, too.
        assert!(remove_entry(&entry, true).is_err());
        assert!(entry.join("stray").exists());
        fs::remove_file(entry.join("stray")).unwrap();
        fs::write(entry.join("outblob"), b"x").unwrap();
        remove_entry(&entry, true).unwrap();
        assert!(!entry.exists());
        // Already gone is fine.
        remove_entry(&entry, false).unwrap();
    }

    #[test]
    fn privlevel_range_is_checked() {
        let p = TsmProvider {
            root: PathBuf::from("/nonexistent"),
            tee: Tee::Snp,
            privlevel: None,
            emulated: false,
        };
        assert!(matches!(p.with_privlevel(4), Err(Error::Encoding(_))));
    }

    #[test]
    fn entry_names_are_unique_and_recognisable() {
        let (_dir, root) = setup();
        let a = Entry::create(&root, false).unwrap();
        let b = Entry::create(&root, false).unwrap();
        assert_ne!(a.path, b.path);
        let name = a.path.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with(&format!("chrysalis-{}-", std::process::id())),
            "{name}"
        );
        drop(a); // dropped entries are removed
        b.remove().unwrap();
        assert_empty(&root);
    }

    #[test]
    fn bounded_read_and_text_parsing() {
        let (_dir, root) = setup();
        fs::write(root.join("generation"), b"17\n").unwrap();
        assert_eq!(read_generation(&root, false).unwrap(), 17);
        fs::write(root.join("generation"), b"seventeen\n").unwrap();
        assert!(matches!(
            read_generation(&root, false),
            Err(Error::Encoding(_))
        ));
        fs::write(root.join("generation"), vec![b'1'; TEXT_ATTR_MAX + 1]).unwrap();
        assert!(read_generation(&root, false).is_err());
        assert_eq!(read_optional_attr(&root, "auxblob", 8).unwrap(), None);
        assert_eq!(tee_of_provider("tdx_guest"), Some(Tee::Tdx));
        assert_eq!(tee_of_provider("sev_guest"), Some(Tee::Snp));
        assert_eq!(tee_of_provider("tdx"), None);
    }
}
