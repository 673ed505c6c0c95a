//! The systemd unit graph of the guest image, from its definition: the
//! trees mkosi copies into the image (`image/extra`, and for the gpu
//! profile `image/gpu/extra` on top), merged the way systemd merges unit
//! files and drop-ins. Checks that the gpu image gates on the GPU
//! (devices -> nvidia-persistenced -> GPU gate -> engine and agent; the
//! engine cannot start before the gate passed and stops with it; each unit
//! has exactly the device access it needs) and that the hardening against
//! host inputs is in place for both profiles. Where `systemd-analyze` is
//! installed, `systemd-analyze verify` checks the merged gpu tree as well
//! (as a root directory with stand-ins for the executables and for the
//! units Debian's packages ship).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// One unit after merging its file and drop-ins: key -> values in order
/// (an empty assignment resets the list, as systemd does for list keys).
#[derive(Debug, Default, Clone)]
struct Unit {
    keys: BTreeMap<String, Vec<String>>,
}

impl Unit {
    fn apply(&mut self, text: &str) {
        let mut section = String::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if line.starts_with('[') {
                section = line.trim_matches(['[', ']']).to_string();
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let key = format!("{section}.{}", k.trim());
            let v = v.trim();
            let list = self.keys.entry(key).or_default();
            if v.is_empty() {
                list.clear();
            } else {
                list.push(v.to_string());
            }
        }
    }

    /// All words of a list key (`Requires=a b` and `Requires=c` give a, b, c).
    fn words(&self, key: &str) -> BTreeSet<String> {
        self.keys
            .get(key)
            .into_iter()
            .flatten()
            .flat_map(|v| v.split_whitespace().map(String::from))
            .collect()
    }

    /// The last value of a key (what a single-valued setting ends up as).
    fn last(&self, key: &str) -> Option<&str> {
        self.keys.get(key)?.last().map(String::as_str)
    }

    fn all(&self, key: &str) -> Vec<String> {
        self.keys.get(key).cloned().unwrap_or_default()
    }
}

/// Copies `src` into `dst` (files and symlinks as they are).
fn copy_tree(src: &Path, dst: &Path) {
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let (s, d) = (e.path(), dst.join(e.file_name()));
        let t = e.file_type().unwrap();
        if t.is_symlink() {
            let _ = std::fs::remove_file(&d);
            std::os::unix::fs::symlink(std::fs::read_link(&s).unwrap(), &d).unwrap();
        } else if t.is_dir() {
            std::fs::create_dir_all(&d).unwrap();
            copy_tree(&s, &d);
        } else {
            std::fs::copy(&s, &d).unwrap();
        }
    }
}

/// The image's root as mkosi assembles it from the definition's trees.
fn image_root(profile: &str) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    copy_tree(&repo().join("image/extra"), root.path());
    if profile == "gpu" {
        copy_tree(&repo().join("image/gpu/extra"), root.path());
    }
    root
}

const UNIT_DIRS: [&str; 2] = ["etc/systemd/system", "usr/lib/systemd/system"];

/// Merges `name` the way systemd does: the first unit file found in the
/// search path (/etc before /usr/lib), then every `name.d/*.conf` drop-in
/// of all directories, ordered by file name. A unit masked to /dev/null
/// comes back as `None`.
fn unit(root: &Path, name: &str) -> Option<Unit> {
    let mut u = Unit::default();
    let mut found = false;
    for dir in UNIT_DIRS {
        let p = root.join(dir).join(name);
        if let Ok(target) = std::fs::read_link(&p) {
            if target == Path::new("/dev/null") {
                return None;
            }
        }
        if let Ok(text) = std::fs::read_to_string(&p) {
            u.apply(&text);
            found = true;
            break;
        }
    }
    let mut dropins: BTreeMap<String, PathBuf> = BTreeMap::new();
    for dir in UNIT_DIRS.iter().rev() {
        if let Ok(rd) = std::fs::read_dir(root.join(dir).join(format!("{name}.d"))) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().to_string();
                if n.ends_with(".conf") {
                    dropins.insert(n, e.path());
                }
            }
        }
    }
    for p in dropins.values() {
        u.apply(&std::fs::read_to_string(p).unwrap());
    }
    // A unit shipped by a Debian package (nvidia-persistenced) has only our
    // drop-in in the definition.
    (found || !dropins.is_empty()).then_some(u)
}

fn must(root: &Path, name: &str) -> Unit {
    unit(root, name).unwrap_or_else(|| panic!("{name}: no such unit (or masked) in the image"))
}

fn set(words: &[&str]) -> BTreeSet<String> {
    words.iter().map(|s| s.to_string()).collect()
}

/// `a` is ordered before `b` (After=/Before= edges, transitively).
fn ordered_before(units: &BTreeMap<String, Unit>, a: &str, b: &str) -> bool {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (n, u) in units {
        for x in u.words("Unit.After") {
            edges.entry(x).or_default().insert(n.clone());
        }
        for x in u.words("Unit.Before") {
            edges.entry(n.clone()).or_default().insert(x);
        }
    }
    let mut seen = BTreeSet::new();
    let mut todo = vec![a.to_string()];
    while let Some(n) = todo.pop() {
        if n == b {
            return true;
        }
        if seen.insert(n.clone()) {
            todo.extend(edges.get(&n).into_iter().flatten().cloned());
        }
    }
    false
}

const GPU_CHAIN: [&str; 6] = [
    "chrysalis-gpu-devices.service",
    "nvidia-persistenced.service",
    "chrysalis-gpu-gate.service",
    "chrysalis-engine.service",
    "chrysalis-agent.service",
    "chrysalis-agent-sim.service",
];

#[test]
fn gpu_image_orders_devices_persistenced_gate_then_engine_and_agent() {
    let root = image_root("gpu");
    check_gpu_chain(root.path());
    check_rim_service_flags(root.path());
}

/// The gate fetches the RIMs its directory lacks from NVIDIA's RIM service
/// into its cache; the agents re-verify offline from that cache.
fn check_rim_service_flags(root: &Path) {
    let gate = must(root, "chrysalis-gpu-gate.service");
    let exec = gate.last("Service.ExecStart").unwrap();
    for flag in [
        "--rim-service https://rim.attestation.nvidia.com",
        "--rim-cache /var/cache/chrysalis-gpu-gate/rims",
    ] {
        assert!(exec.contains(flag), "gate: {exec}");
    }
    assert_eq!(
        gate.last("Service.CacheDirectory"),
        Some("chrysalis-gpu-gate")
    );
    for agent in ["chrysalis-agent.service", "chrysalis-agent-sim.service"] {
        let exec = must(root, agent)
            .last("Service.ExecStart")
            .unwrap()
            .to_string();
        assert!(
            exec.contains("--gpu-rim-cache /var/cache/chrysalis-gpu-gate/rims")
                && exec.contains("--gpu-offline"),
            "{agent}: {exec}"
        );
    }
}

/// The GPU chain's ordering, dependencies and sandboxing, on a root
/// directory: the definition's merged trees, or a built image's root.
fn check_gpu_chain(root: &Path) {
    let units: BTreeMap<String, Unit> = GPU_CHAIN
        .iter()
        .map(|n| (n.to_string(), must(root, n)))
        .collect();
    for (a, b) in [
        (
            "chrysalis-gpu-devices.service",
            "nvidia-persistenced.service",
        ),
        ("nvidia-persistenced.service", "chrysalis-gpu-gate.service"),
        ("chrysalis-gpu-gate.service", "chrysalis-engine.service"),
        ("chrysalis-gpu-gate.service", "chrysalis-agent.service"),
        ("chrysalis-gpu-gate.service", "chrysalis-agent-sim.service"),
    ] {
        assert!(
            ordered_before(&units, a, b),
            "{a} must be ordered before {b}"
        );
        assert!(
            !ordered_before(&units, b, a),
            "ordering cycle between {a} and {b}"
        );
    }

    let gate = &units["chrysalis-gpu-gate.service"];
    assert_eq!(gate.last("Service.Type"), Some("oneshot"));
    // Active only after it passed, and it stays active: what the engine binds to.
    assert_eq!(gate.last("Service.RemainAfterExit"), Some("yes"));
    assert!(gate.words("Unit.Requires").is_superset(&set(&[
        "chrysalis-gpu-devices.service",
        "nvidia-persistenced.service"
    ])));
    assert!(gate
        .last("Service.ExecStart")
        .unwrap()
        .starts_with("/usr/bin/chrysalis-gpu-gate "));
    let gate_exec = gate.last("Service.ExecStart").unwrap();
    for flag in [
        "--out /run/chrysalis/gpu/evidence.json",
        "--policy /usr/lib/chrysalis/gpu/gpu-policy.toml",
        "--rim /usr/lib/chrysalis/gpu/rims",
    ] {
        assert!(gate_exec.contains(flag), "gate: {gate_exec}");
    }
    // The one privilege the ready-state call needs, and only NVIDIA devices.
    assert_eq!(
        gate.last("Service.CapabilityBoundingSet"),
        Some("CAP_SYS_ADMIN")
    );
    assert_eq!(gate.last("Service.DevicePolicy"), Some("closed"));
    assert_eq!(
        gate.all("Service.DeviceAllow"),
        vec!["char-nvidia rw", "char-nvidia-uvm rw"]
    );
    assert_ne!(gate.last("Service.PrivateDevices"), Some("yes"));
    assert_eq!(gate.last("Service.NoNewPrivileges"), Some("yes"));

    let engine = &units["chrysalis-engine.service"];
    // Cannot start before the gate passed, stops when it fails or stops.
    for k in ["Unit.Requires", "Unit.BindsTo", "Unit.After"] {
        assert!(
            engine.words(k).contains("chrysalis-gpu-gate.service"),
            "engine {k}= must name the gate"
        );
    }
    assert!(engine
        .words("Unit.Requires")
        .contains("chrysalis-model.service"));
    assert_eq!(engine.last("Service.User"), Some("chrysalis-engine"));
    assert_eq!(engine.last("Service.PrivateDevices"), Some("no"));
    assert_eq!(engine.last("Service.DevicePolicy"), Some("closed"));
    assert_eq!(
        engine.all("Service.DeviceAllow"),
        vec!["char-nvidia rw", "char-nvidia-uvm rw"]
    );
    assert_eq!(
        engine.last("Service.SupplementaryGroups"),
        Some("chrysalis-gpu")
    );
    // Still loopback only, unprivileged, no capabilities.
    assert_eq!(engine.last("Service.IPAddressDeny"), Some("any"));
    assert_eq!(engine.last("Service.IPAddressAllow"), Some("localhost"));
    assert_eq!(engine.last("Service.CapabilityBoundingSet"), None);
    assert!(engine.all("Service.CapabilityBoundingSet").is_empty());
    assert_eq!(engine.last("Service.NoNewPrivileges"), Some("yes"));
    assert_eq!(engine.last("Service.ProtectSystem"), Some("strict"));
    assert_eq!(
        engine.last("Service.ExecStart"),
        Some("/opt/vllm/bin/python /usr/lib/chrysalis/gpu/run-vllm")
    );
    assert_eq!(
        engine.last("Service.CacheDirectory"),
        Some("chrysalis-engine")
    );

    for agent in ["chrysalis-agent.service", "chrysalis-agent-sim.service"] {
        let a = &units[agent];
        // Started after the gate finished, passed or not: without its
        // bundle the agent is not ready and says why on /readyz.
        assert!(
            a.words("Unit.Wants").contains("chrysalis-gpu-gate.service"),
            "{agent}"
        );
        assert!(
            a.words("Unit.After").contains("chrysalis-gpu-gate.service"),
            "{agent}"
        );
        let exec = a.last("Service.ExecStart").unwrap();
        assert!(
            exec.contains("--gpu gate --gpu-bundle /run/chrysalis/gpu/evidence.json"),
            "{agent}: {exec}"
        );
        assert!(exec.contains("--runtime-config /run/chrysalis/host-config.json"));
        // Judged by the same policy and RIMs as the gate.
        assert!(
            exec.contains("--gpu-policy /usr/lib/chrysalis/gpu/gpu-policy.toml")
                && exec.contains("--gpu-rim /usr/lib/chrysalis/gpu/rims"),
            "{agent}: {exec}"
        );
        // The agent touches no device and holds no capability.
        assert_eq!(a.last("Service.PrivateDevices"), Some("yes"), "{agent}");
        assert!(a.all("Service.CapabilityBoundingSet").is_empty(), "{agent}");
        assert_eq!(a.last("Service.User"), Some("chrysalis-agent"));
    }
    let provider = |n: &str| {
        units[n]
            .last("Service.ExecStart")
            .unwrap()
            .split_whitespace()
            .skip_while(|w| *w != "--provider")
            .nth(1)
            .map(String::from)
    };
    assert_eq!(provider("chrysalis-agent.service").as_deref(), Some("tsm"));
    assert_eq!(
        provider("chrysalis-agent-sim.service").as_deref(),
        Some("sim")
    );

    let pd = &units["nvidia-persistenced.service"];
    let exec = pd.last("Service.ExecStart").unwrap();
    assert!(exec.contains("--uvm-persistence-mode"), "{exec}");
    assert!(pd
        .words("Unit.Requires")
        .contains("chrysalis-gpu-devices.service"));
    assert_eq!(
        pd.all("Service.DeviceAllow"),
        vec!["char-nvidia rw", "char-nvidia-uvm rw"]
    );

    let dev = &units["chrysalis-gpu-devices.service"];
    assert_eq!(
        dev.last("Service.ExecStart"),
        Some("/usr/lib/chrysalis/gpu/nvidia-devices")
    );
    let script =
        std::fs::read_to_string(root.join("usr/lib/chrysalis/gpu/nvidia-devices")).unwrap();
    for needle in [
        "modprobe nvidia-uvm",
        "node nvidia-uvm ",
        "node nvidiactl 195 255",
    ] {
        assert!(script.contains(needle), "nvidia-devices must do `{needle}`");
    }

    // Every unit of the chain is started at boot.
    for n in [
        "chrysalis-gpu-devices.service",
        "chrysalis-gpu-gate.service",
    ] {
        assert_eq!(
            units[n].last("Install.WantedBy"),
            Some("multi-user.target"),
            "{n}"
        );
    }
}

#[test]
fn the_gate_policy_is_the_strict_one() {
    let text = std::fs::read_to_string(
        repo().join("image/gpu/extra/usr/lib/chrysalis/gpu/gpu-policy.toml"),
    )
    .unwrap();
    let p = chrysalis_gpu::GpuPolicy::from_toml_str(&text).unwrap();
    assert_eq!(p, chrysalis_gpu::GpuPolicy::default());
}

#[test]
fn the_cpu_image_has_no_gpu_chain() {
    let root = image_root("cpu");
    let engine = must(root.path(), "chrysalis-engine.service");
    assert!(!engine
        .words("Unit.Requires")
        .contains("chrysalis-gpu-gate.service"));
    assert_eq!(engine.last("Service.PrivateDevices"), Some("yes"));
    assert!(unit(root.path(), "chrysalis-gpu-gate.service").is_none());
    let agent = must(root.path(), "chrysalis-agent-sim.service");
    assert!(!agent.last("Service.ExecStart").unwrap().contains("--gpu"));
}

#[test]
fn emergency_and_rescue_power_off_in_both_profiles() {
    for profile in ["cpu", "gpu"] {
        let root = image_root(profile);
        for n in ["emergency.service", "rescue.service"] {
            let u = must(root.path(), n);
            assert_eq!(
                u.last("Unit.SuccessAction"),
                Some("poweroff-force"),
                "{profile} {n}"
            );
            assert_eq!(
                u.last("Unit.FailureAction"),
                Some("poweroff-force"),
                "{profile} {n}"
            );
            let exec = u.all("Service.ExecStart");
            assert_eq!(exec.len(), 1, "{n}: ExecStart reset to one command");
            assert!(!exec[0].contains("sulogin"), "{n}: {exec:?}");
            assert!(u.all("Service.ExecStartPre").is_empty());
            assert!(u.all("Service.ExecStopPost").is_empty());
        }
        // No shells or logins on the host-owned console.
        for n in ["debug-shell.service", "getty@.service"] {
            assert!(unit(root.path(), n).is_none(), "{n} must be masked");
        }
    }
}

#[test]
fn the_measured_command_line_closes_host_channels() {
    let t = std::fs::read_to_string(repo().join("image/cmdline.direct")).unwrap();
    let opts: Vec<&str> = t
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    // No UEFI variables (systemd would read SystemdOptions with Secure Boot
    // off), no credentials from SMBIOS / fw_cfg / the command line.
    assert!(opts.contains(&"efi=noruntime"));
    assert!(opts.contains(&"systemd.import_credentials=no"));
    // Nothing that reopens a shell or lets the host pick the target.
    for bad in [
        "systemd.debug_shell",
        "systemd.unit=",
        "rd.systemd.unit=",
        "init=",
    ] {
        assert!(
            !opts.iter().any(|o| o.starts_with(bad)),
            "{bad} on the measured command line"
        );
    }
    // The UKI (disk boot) carries the same closing options.
    let mkosi = std::fs::read_to_string(repo().join("mkosi.conf")).unwrap();
    for o in ["efi=noruntime", "systemd.import_credentials=no"] {
        assert!(
            mkosi.lines().any(|l| l.trim() == o),
            "mkosi.conf KernelCommandLine lacks {o}"
        );
    }
}

/// `systemd-analyze verify` on the merged gpu tree: syntax, unknown keys,
/// dependencies on units that do not exist, executables. Skipped (with a
/// note) where systemd-analyze is not installed.
#[test]
fn systemd_analyze_verifies_the_gpu_units() {
    let Ok(v) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("note: systemd-analyze not installed: unit verification skipped");
        return;
    };
    if !v.status.success() {
        eprintln!("note: systemd-analyze unusable: unit verification skipped");
        return;
    }
    let root = image_root("gpu");
    let r = root.path();
    // systemd's own units (targets, the units ours order against) from
    // the host, and stand-ins for what Debian's packages install.
    let sys = r.join("usr/lib/systemd/system");
    for e in std::fs::read_dir("/usr/lib/systemd/system")
        .or_else(|_| std::fs::read_dir("/lib/systemd/system"))
        .unwrap()
        .flatten()
    {
        let d = sys.join(e.file_name());
        if !d.exists() && std::fs::symlink_metadata(&d).is_err() {
            let t = e.file_type().unwrap();
            if t.is_file() {
                std::fs::copy(e.path(), &d).unwrap();
            } else if t.is_symlink() {
                std::os::unix::fs::symlink(std::fs::read_link(e.path()).unwrap(), &d).unwrap();
            }
        }
    }
    std::fs::write(
        sys.join("nvidia-persistenced.service"),
        "[Unit]\nDescription=stand-in for Debian's unit\n[Service]\nType=forking\nExecStart=/usr/bin/nvidia-persistenced --user nvpd\n",
    )
    .unwrap();
    let exes = [
        "usr/bin/chrysalis-agent",
        "usr/bin/chrysalis-gpu-gate",
        "usr/bin/chrysalis-model-volume",
        "usr/bin/chrysalis-stub-engine",
        "usr/bin/nvidia-persistenced",
        "opt/vllm/bin/python",
        "usr/bin/echo",
        "bin/echo",
        "bin/chown",
    ];
    for x in exes {
        let p = r.join(x);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", r.display()))
        .arg("--man=no")
        .args(GPU_CHAIN)
        .args(["chrysalis-model.service", "chrysalis-config.service"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Any complaint about our units fails (a setting the host's systemd
    // does not know yet would too: our units use none newer than 252).
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("chrysalis") || l.contains("nvidia"))
        .collect();
    assert!(
        ours.is_empty() && out.status.success(),
        "systemd-analyze verify (rc {:?}):\n{text}",
        out.status.code()
    );
    if !text.trim().is_empty() {
        eprintln!("systemd-analyze verify notes:\n{text}");
    }
}

/// The root of a built gpu image, from `CHRYSALIS_GPU_IMAGE`: a release
/// directory of `chrysalis image build --profile gpu` (its erofs
/// `rootfs.img` is extracted with `fsck.erofs --extract`, erofs-utils >=
/// 1.8 for its zstd compression, into a temporary directory under
/// `$TMPDIR`: about 11 GB), or a directory that already is that root (e.g.
/// `mount -o loop,ro -t erofs rootfs.img DIR`, or extracted once for
/// repeated runs). `None` (with a note) when the variable is not set.
fn built_gpu_root() -> Option<(PathBuf, Option<tempfile::TempDir>)> {
    let Some(dir) = std::env::var_os("CHRYSALIS_GPU_IMAGE") else {
        eprintln!(
            "note: CHRYSALIS_GPU_IMAGE is not set: the built gpu image's unit graph is not checked \
             (set it to the release directory of `chrysalis image build --profile gpu`, \
             or to its extracted root filesystem)"
        );
        return None;
    };
    let dir = PathBuf::from(dir);
    if dir.join("usr/lib/systemd/system").is_dir() {
        return Some((dir, None));
    }
    let img = dir.join("rootfs.img");
    assert!(
        img.is_file(),
        "CHRYSALIS_GPU_IMAGE={}: neither a root filesystem (no usr/lib/systemd/system) nor a release directory (no rootfs.img)",
        dir.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let out = Command::new("fsck.erofs")
        .arg(format!("--extract={}", root.display()))
        .arg(&img)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "fsck.erofs (erofs-utils) is needed to extract {}: {e}",
                img.display()
            )
        });
    assert!(
        out.status.success(),
        "fsck.erofs --extract {} failed (rc {:?}; the gpu root is zstd-compressed: erofs-utils >= 1.8 \
         reads it, or mount it read-only and set CHRYSALIS_GPU_IMAGE to the mount point):\n{}",
        img.display(),
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((root, Some(tmp)))
}

/// `path` (absolute, as a unit names it) inside `root`, following symlinks
/// the way the guest would (absolute targets stay inside `root`); `None`
/// when it does not exist there or the links loop.
fn resolve_in_root(root: &Path, path: &str) -> Option<PathBuf> {
    let mut todo: Vec<String> = path
        .split('/')
        .filter(|c| !c.is_empty())
        .rev()
        .map(String::from)
        .collect();
    let mut cur = PathBuf::new();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        match c.as_str() {
            "." => continue,
            ".." => {
                cur.pop();
                continue;
            }
            _ => {}
        }
        let next = cur.join(&c);
        match std::fs::read_link(root.join(&next)) {
            Ok(target) => {
                links += 1;
                if links > 40 {
                    return None;
                }
                if target.is_absolute() {
                    cur = PathBuf::new();
                }
                let t = target.to_string_lossy().to_string();
                todo.extend(
                    t.split('/')
                        .filter(|c| !c.is_empty())
                        .rev()
                        .map(String::from),
                );
            }
            Err(_) => cur = next,
        }
    }
    let full = root.join(cur);
    full.exists().then_some(full)
}

/// Every unit `start` pulls in at boot: `.wants/` and `.requires/`
/// directories and `Wants=`, `Requires=`, `BindsTo=` of each unit reached.
fn pulled_in(root: &Path, start: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![start.to_string()];
    while let Some(n) = todo.pop() {
        if !seen.insert(n.clone()) {
            continue;
        }
        for dir in UNIT_DIRS {
            for suffix in ["wants", "requires"] {
                if let Ok(rd) = std::fs::read_dir(root.join(dir).join(format!("{n}.{suffix}"))) {
                    todo.extend(
                        rd.flatten()
                            .map(|e| e.file_name().to_string_lossy().to_string()),
                    );
                }
            }
        }
        if let Some(u) = unit(root, &n) {
            for k in ["Unit.Wants", "Unit.Requires", "Unit.BindsTo"] {
                todo.extend(u.words(k));
            }
        }
    }
    seen
}

/// Files under `dir` (recursively) whose name starts with `prefix`.
fn find_files(dir: &Path, prefix: &str, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let t = e.file_type().unwrap();
        if t.is_dir() {
            find_files(&e.path(), prefix, out);
        } else if e.file_name().to_string_lossy().starts_with(prefix) {
            out.push(e.path());
        }
    }
}

/// The unit graph of the BUILT gpu image (`CHRYSALIS_GPU_IMAGE`, see
/// [`built_gpu_root`]; skipped with a note when it is not set): the same
/// chain as the definition, now merged with what Debian's packages
/// installed (nvidia-persistenced's own unit under our drop-in); every unit
/// of the chain pulled in by multi-user.target; every command the chain
/// runs present and executable in the image; the NVIDIA modules DKMS built
/// for the image's one kernel, no DKMS signing key or build log left;
/// vLLM's entry point installed; and `systemd-analyze verify --root` (where
/// installed) with no complaint about a chrysalis or NVIDIA unit.
#[test]
fn the_built_gpu_image_gates_on_the_gpu() {
    let Some((root, _tmp)) = built_gpu_root() else {
        return;
    };
    let root = root.as_path();
    check_gpu_chain(root);

    // Debian's nvidia-persistenced unit is there, ours only a drop-in.
    assert!(
        root.join("usr/lib/systemd/system/nvidia-persistenced.service")
            .is_file(),
        "nvidia-persistenced.service (Debian's nvidia-persistenced package) missing"
    );
    let boot = pulled_in(root, "multi-user.target");
    for n in GPU_CHAIN
        .iter()
        .chain(&["chrysalis-model.service", "chrysalis-config.service"])
    {
        assert!(
            boot.contains(*n),
            "{n} is not pulled in by multi-user.target"
        );
    }
    for n in GPU_CHAIN
        .iter()
        .chain(&["chrysalis-model.service", "chrysalis-config.service"])
    {
        let u = must(root, n);
        for k in [
            "Service.ExecStart",
            "Service.ExecStartPre",
            "Service.ExecStartPost",
        ] {
            for cmd in u.all(k) {
                let exe = cmd
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .trim_start_matches(['-', '@', ':', '+', '!']);
                let p = resolve_in_root(root, exe)
                    .unwrap_or_else(|| panic!("{n} {k}={cmd}: {exe} is not in the image"));
                use std::os::unix::fs::PermissionsExt;
                let m = std::fs::metadata(&p).unwrap();
                assert!(
                    m.is_file() && m.permissions().mode() & 0o111 != 0,
                    "{n}: {exe} is not an executable file"
                );
            }
        }
    }
    for g in ["chrysalis-gpu", "chrysalis-engine", "chrysalis-agent"] {
        let mut sysusers = String::new();
        for e in std::fs::read_dir(root.join("usr/lib/sysusers.d"))
            .unwrap()
            .flatten()
        {
            sysusers += &std::fs::read_to_string(e.path()).unwrap_or_default();
        }
        let in_group = std::fs::read_to_string(root.join("etc/group"))
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with(&format!("{g}:")));
        assert!(
            in_group
                || sysusers
                    .lines()
                    .any(|l| l.split_whitespace().nth(1) == Some(g)),
            "group {g}: neither in /etc/group nor in sysusers.d"
        );
    }

    // One kernel, and the NVIDIA open modules DKMS built for it.
    let kernels: Vec<PathBuf> = std::fs::read_dir(root.join("usr/lib/modules"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("modules.dep").is_file())
        .collect();
    assert_eq!(kernels.len(), 1, "kernels in the image: {kernels:?}");
    for m in ["nvidia-current-open.ko", "nvidia-current-open-uvm.ko"] {
        let mut found = Vec::new();
        find_files(&kernels[0], m, &mut found);
        assert!(
            !found.is_empty(),
            "{m} not built for {}",
            kernels[0].display()
        );
    }
    assert!(
        !root.join("var/lib/dkms/mok.key").exists(),
        "DKMS signing key left in the image"
    );
    // Build logs vary from build to build (DKMS's make.log starts with the
    // date): none may be left, or the release cannot be reproduced.
    let mut logs = Vec::new();
    find_files(&root.join("var/lib/dkms"), "make.log", &mut logs);
    assert!(
        logs.is_empty(),
        "DKMS build logs left in the image: {logs:?}"
    );

    // The engine's interpreter and vLLM's server module.
    let lib = root.join("opt/vllm/lib");
    let site = std::fs::read_dir(&lib)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("site-packages"))
        .find(|p| p.is_dir())
        .expect("/opt/vllm/lib/python3.*/site-packages");
    assert!(site.join("vllm/entrypoints/openai/api_server.py").is_file());
    assert!(site.join("torch/__init__.py").is_file());

    match Command::new("systemd-analyze").arg("--version").output() {
        Ok(v) if v.status.success() => {}
        _ => {
            eprintln!(
                "note: systemd-analyze not installed: `verify` of the built gpu units skipped"
            );
            return;
        }
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg("--man=no")
        .args(GPU_CHAIN)
        .args(["chrysalis-model.service", "chrysalis-config.service"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("chrysalis") || l.contains("nvidia"))
        .collect();
    assert!(
        ours.is_empty() && out.status.success(),
        "systemd-analyze verify --root={} (rc {:?}):\n{text}",
        root.display(),
        out.status.code()
    );
    if !text.trim().is_empty() {
        eprintln!("systemd-analyze verify notes (other units):\n{text}");
    }
}
