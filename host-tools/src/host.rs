//! `chrysalis host check`: can this host run a Chrysalis node? CPU and
//! kernel TDX / SNP enablement, IOMMU, QEMU and firmware versions, VFIO
//! binding of the GPUs and their confidential-computing mode — each failure
//! with its fix.
//!
//! Exit codes: 0 the host can run the requested TEE (any: at least one),
//! 4 it cannot (see the failed checks), 1 I/O or usage.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;
use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::exit;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TeeWanted {
    /// Either TDX or SNP.
    Any,
    /// Intel TDX.
    Tdx,
    /// AMD SEV-SNP.
    Snp,
}

#[derive(Args)]
pub struct HostArgs {
    /// `check`: the only action (kept as a word for later ones).
    #[arg(value_parser = ["check"])]
    action: String,
    /// Which TEE the host must support.
    #[arg(long, value_enum, default_value = "any")]
    tee: TeeWanted,
    /// Also check this release directory's firmware (against its SHA256SUMS)
    /// and the QEMU version its measurements assume.
    #[arg(long, value_name = "DIR")]
    image: Option<PathBuf>,
    /// QEMU binary.
    #[arg(long, default_value = "qemu-system-x86_64")]
    qemu: String,
    /// Read /sys, /proc and /dev under this directory (testing).
    #[arg(long, hide = true, default_value = "/")]
    root: PathBuf,
    /// JSON output.
    #[arg(long)]
    json: bool,
}

/// Outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Fail,
    Warn,
    Skip,
}

/// Which TEE a check matters for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Common,
    Tdx,
    Snp,
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub scope: Scope,
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// How to fix it (empty when ok).
    pub fix: String,
}

fn check(name: &'static str, scope: Scope, status: Status, detail: String, fix: &str) -> Check {
    Check {
        name,
        scope,
        status,
        detail,
        fix: if status == Status::Ok {
            String::new()
        } else {
            fix.to_string()
        },
    }
}

/// The host, read through a root directory (`/` normally).
pub struct Host {
    root: PathBuf,
}

impl Host {
    fn read(&self, p: &str) -> Option<String> {
        std::fs::read_to_string(self.root.join(p.trim_start_matches('/')))
            .ok()
            .map(|s| s.trim().to_string())
    }
    fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }
    fn param_on(&self, p: &str) -> Option<bool> {
        self.read(p).map(|v| matches!(v.as_str(), "Y" | "y" | "1"))
    }
}

/// Parses `QEMU emulator version X.Y.Z …` into (X, Y, Z).
pub fn parse_qemu_version(s: &str) -> Option<(u32, u32, u32)> {
    let v = s.split("version ").nth(1)?.split_whitespace().next()?;
    let mut it = v
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty());
    Some((
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
        it.next().and_then(|p| p.parse().ok()).unwrap_or(0),
    ))
}

/// All checks, given the host and QEMU's `--version` output.
pub fn checks(h: &Host, qemu_version: Option<&str>, image: Option<&Path>) -> Vec<Check> {
    let mut out = Vec::new();
    let cpuinfo = h.read("/proc/cpuinfo").unwrap_or_default();
    let intel = cpuinfo.contains("GenuineIntel");
    let amd = cpuinfo.contains("AuthenticAMD");

    let kvm = h.path("/dev/kvm").exists();
    out.push(check(
        "kvm",
        Scope::Common,
        if kvm { Status::Ok } else { Status::Fail },
        if kvm {
            "/dev/kvm present".into()
        } else {
            "/dev/kvm missing".into()
        },
        "enable virtualization (VT-x / AMD-V) in the BIOS and load kvm_intel or kvm_amd",
    ));

    let tdx = h.param_on("/sys/module/kvm_intel/parameters/tdx");
    out.push(check(
        "tdx",
        Scope::Tdx,
        match (intel, tdx) {
            (_, Some(true)) => Status::Ok,
            (false, _) => Status::Skip,
            _ => Status::Fail,
        },
        match (intel, tdx) {
            (false, _) => "not an Intel CPU".into(),
            (_, None) => "kvm_intel has no tdx parameter (kernel without TDX host support, or kvm_intel not loaded)".into(),
            (_, Some(v)) => format!("kvm_intel.tdx = {}", if v { "Y" } else { "N" }),
        },
        "enable TDX in the BIOS (TME, TME-MT, TDX, SEAM loader), boot a kernel with TDX host support (Linux ≥ 6.16 or your distribution's TDX kernel) with kvm_intel.tdx=1",
    ));

    let snp = h.param_on("/sys/module/kvm_amd/parameters/sev_snp");
    out.push(check(
        "snp",
        Scope::Snp,
        match (amd, snp) {
            (_, Some(true)) => Status::Ok,
            (false, _) => Status::Skip,
            _ => Status::Fail,
        },
        match (amd, snp) {
            (false, _) => "not an AMD CPU".into(),
            (_, None) => "kvm_amd has no sev_snp parameter (kernel without SNP host support, or kvm_amd not loaded)".into(),
            (_, Some(v)) => format!("kvm_amd.sev_snp = {}", if v { "Y" } else { "N" }),
        },
        "enable SEV-SNP and SNP memory coverage in the BIOS, update the SEV firmware, boot Linux ≥ 6.11 with kvm_amd.sev=1 kvm_amd.sev_snp=1",
    ));

    let iommus = std::fs::read_dir(h.path("/sys/class/iommu"))
        .map(|d| d.count())
        .unwrap_or(0);
    out.push(check(
        "iommu",
        Scope::Common,
        if iommus > 0 { Status::Ok } else { Status::Fail },
        format!("{iommus} IOMMU unit(s) in /sys/class/iommu"),
        "enable VT-d / AMD-Vi in the BIOS and boot with intel_iommu=on (Intel) or amd_iommu=on (AMD), plus iommu=pt",
    ));

    let qv = qemu_version.and_then(parse_qemu_version);
    out.push(check(
        "qemu",
        Scope::Common,
        if qv.is_some() {
            Status::Ok
        } else {
            Status::Fail
        },
        match qv {
            Some((a, b, c)) => format!("QEMU {a}.{b}.{c}"),
            None => "qemu-system-x86_64 not found".into(),
        },
        "install QEMU (apt install qemu-system-x86)",
    ));
    if let Some(v) = qv {
        out.push(check(
            "qemu-tdx",
            Scope::Tdx,
            if !intel {
                Status::Skip
            } else if v >= (10, 1, 0) {
                Status::Ok
            } else {
                Status::Fail
            },
            format!(
                "QEMU {}.{}.{}; upstream TDX guests need ≥ 10.1",
                v.0, v.1, v.2
            ),
            "install QEMU ≥ 10.1 (or your distribution's TDX-enabled QEMU)",
        ));
        out.push(check(
            "qemu-snp",
            Scope::Snp,
            if !amd {
                Status::Skip
            } else if v >= (9, 1, 0) {
                Status::Ok
            } else {
                Status::Fail
            },
            format!(
                "QEMU {}.{}.{}; upstream SNP guests need ≥ 9.1",
                v.0, v.1, v.2
            ),
            "install QEMU ≥ 9.1",
        ));
    }

    if let Some(dir) = image {
        out.extend(image_checks(dir, qv));
    }
    out.extend(gpu_checks(h));
    out
}

fn image_checks(dir: &Path, qv: Option<(u32, u32, u32)>) -> Vec<Check> {
    let mut out = Vec::new();
    let sums = crate::image::read_sha256sums(&dir.join("SHA256SUMS")).unwrap_or_default();
    for (name, scope) in [
        ("firmware-tdx.fd", Scope::Tdx),
        ("firmware-snp.fd", Scope::Snp),
    ] {
        let p = dir.join(name);
        let actual = chrysalis_measurements::tdx::sha256_file(&p)
            .ok()
            .map(|(h, _)| hex::encode(h));
        let (status, detail) = match (&actual, sums.get(name)) {
            (None, _) => (Status::Fail, format!("{} missing", p.display())),
            (Some(a), Some(e)) if a == e => {
                (Status::Ok, format!("{name} sha256 {a} (as in SHA256SUMS)"))
            }
            (Some(a), Some(e)) => (
                Status::Fail,
                format!("{name} sha256 {a}, SHA256SUMS says {e}"),
            ),
            (Some(a), None) => (
                Status::Warn,
                format!("{name} sha256 {a}, not in SHA256SUMS"),
            ),
        };
        out.push(check(
            if scope == Scope::Tdx { "firmware-tdx" } else { "firmware-snp" },
            scope,
            status,
            detail,
            "use the release's firmware as published (rebuild with image/firmware/build.sh and compare)",
        ));
    }
    let assumed = std::fs::read_to_string(dir.join("measurements.json"))
        .ok()
        .and_then(|t| chrysalis_measurements::manifest::MeasurementsManifest::from_json(&t).ok())
        .and_then(|m| {
            m.configurations
                .iter()
                .find_map(|c| c.vm.vmm_version.clone())
        });
    if let (Some(a), Some(v)) = (assumed, qv) {
        let same = parse_qemu_version(&format!("version {a}")) == Some(v);
        out.push(check(
            "qemu-matches-measurements",
            Scope::Tdx,
            if same { Status::Ok } else { Status::Warn },
            format!("measurements assume QEMU {a}, host has {}.{}.{}", v.0, v.1, v.2),
            "MRTD/RTMR0 depend on the QEMU version: use the assumed version or rebuild the measurements with --qemu-version",
        ));
    }
    out
}

fn gpu_checks(h: &Host) -> Vec<Check> {
    let mut out = Vec::new();
    let Ok(devs) = std::fs::read_dir(h.path("/sys/bus/pci/devices")) else {
        return out;
    };
    let mut names: Vec<PathBuf> = devs.flatten().map(|e| e.path()).collect();
    names.sort();
    for dev in names {
        let rd = |f: &str| {
            std::fs::read_to_string(dev.join(f))
                .map(|s| s.trim().to_string())
                .ok()
        };
        if rd("vendor").as_deref() != Some("0x10de") {
            continue;
        }
        let class = rd("class").unwrap_or_default();
        if !(class.starts_with("0x0300") || class.starts_with("0x0302")) {
            continue;
        }
        let addr = dev
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let driver = std::fs::read_link(dev.join("driver"))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().to_string()));
        let bound = driver.as_deref() == Some("vfio-pci");
        out.push(Check {
            name: "gpu-vfio",
            scope: Scope::Common,
            status: if bound { Status::Ok } else { Status::Fail },
            detail: format!("NVIDIA GPU {addr}: driver {}", driver.as_deref().unwrap_or("none")),
            fix: if bound {
                String::new()
            } else {
                format!("bind it to vfio-pci: driverctl set-override {addr} vfio-pci (or echo vfio-pci > /sys/bus/pci/devices/{addr}/driver_override, unbind, then echo {addr} > /sys/bus/pci/drivers_probe)")
            },
        });
        let cc = Command::new("nvidia_gpu_tools.py")
            .args(["--gpu-bdf", &addr, "--query-cc-mode"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string());
        let (status, detail) = match &cc {
            Some(t) if t.contains("CC mode is on") || t.contains("cc_mode: on") => {
                (Status::Ok, format!("{addr}: CC mode on"))
            }
            Some(t) => (
                Status::Fail,
                format!("{addr}: {}", t.lines().last().unwrap_or("CC mode not on")),
            ),
            None => (
                Status::Warn,
                format!("{addr}: CC mode unknown (nvidia_gpu_tools.py not found)"),
            ),
        };
        out.push(Check {
            name: "gpu-cc-mode",
            scope: Scope::Common,
            status,
            detail,
            fix: if status == Status::Ok {
                String::new()
            } else {
                format!("with NVIDIA's gpu-admin-tools: nvidia_gpu_tools.py --gpu-bdf {addr} --set-cc-mode=on --reset-after-cc-mode-switch (devtools mode must stay off)")
            },
        });
    }
    out
}

/// Whether the checks allow running the wanted TEE.
pub fn verdict(checks: &[Check], tee: TeeWanted) -> bool {
    let no_fail = |scope: Scope| {
        !checks
            .iter()
            .any(|c| c.scope == scope && c.status == Status::Fail)
    };
    let enabled = |name: &str| {
        checks
            .iter()
            .any(|c| c.name == name && c.status == Status::Ok)
    };
    let tdx = no_fail(Scope::Tdx) && enabled("tdx");
    let snp = no_fail(Scope::Snp) && enabled("snp");
    no_fail(Scope::Common)
        && match tee {
            TeeWanted::Tdx => tdx,
            TeeWanted::Snp => snp,
            TeeWanted::Any => tdx || snp,
        }
}

pub fn run(a: HostArgs) -> i32 {
    let r = (|| -> Result<i32> {
        let qemu = Command::new(&a.qemu)
            .arg("--version")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string());
        let host = Host {
            root: a.root.clone(),
        };
        let cs = checks(&host, qemu.as_deref(), a.image.as_deref());
        let pass = verdict(&cs, a.tee);
        if a.json {
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({"tee": a.tee, "ready": pass, "checks": cs})
                )?
            );
        } else {
            for c in &cs {
                let tag = match c.status {
                    Status::Ok => "ok  ",
                    Status::Fail => "FAIL",
                    Status::Warn => "warn",
                    Status::Skip => "skip",
                };
                println!("{tag} {:<26} {}", c.name, c.detail);
                if !c.fix.is_empty() && c.status != Status::Skip {
                    println!("     fix: {}", c.fix);
                }
            }
            println!(
                "{}",
                if pass {
                    "this host can run a Chrysalis node"
                } else {
                    "this host cannot run a Chrysalis node yet: fix the FAIL lines"
                }
            );
        }
        Ok(if pass { exit::OK } else { exit::REJECTED })
    })();
    r.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        exit::IO
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (p, c) in files {
            let p = d.path().join(p.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, c).unwrap();
        }
        d
    }

    #[test]
    fn qemu_versions() {
        assert_eq!(
            parse_qemu_version("QEMU emulator version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)"),
            Some((7, 2, 19))
        );
        assert_eq!(
            parse_qemu_version("QEMU emulator version 10.1.0"),
            Some((10, 1, 0))
        );
        assert_eq!(parse_qemu_version("nothing"), None);
    }

    #[test]
    fn tdx_host_passes_and_plain_host_fails_with_fixes() {
        let d = fake(&[
            ("/proc/cpuinfo", "vendor_id : GenuineIntel\n"),
            ("/dev/kvm", ""),
            ("/sys/module/kvm_intel/parameters/tdx", "Y\n"),
            ("/sys/class/iommu/dmar0/x", ""),
        ]);
        let h = Host {
            root: d.path().into(),
        };
        let cs = checks(&h, Some("QEMU emulator version 10.1.2"), None);
        assert!(verdict(&cs, TeeWanted::Tdx), "{cs:#?}");
        assert!(verdict(&cs, TeeWanted::Any));
        assert!(!verdict(&cs, TeeWanted::Snp));

        let d = fake(&[("/proc/cpuinfo", "vendor_id : GenuineIntel\n")]);
        let h = Host {
            root: d.path().into(),
        };
        let cs = checks(&h, Some("QEMU emulator version 7.2.0"), None);
        assert!(!verdict(&cs, TeeWanted::Any));
        for name in ["kvm", "tdx", "iommu", "qemu-tdx"] {
            let c = cs.iter().find(|c| c.name == name).unwrap();
            assert_eq!(c.status, Status::Fail, "{name}");
            assert!(!c.fix.is_empty(), "{name} has a fix");
        }
    }

    #[test]
    fn gpu_not_bound_to_vfio_fails() {
        let d = fake(&[
            ("/sys/bus/pci/devices/0000:41:00.0/vendor", "0x10de\n"),
            ("/sys/bus/pci/devices/0000:41:00.0/class", "0x030200\n"),
        ]);
        let h = Host {
            root: d.path().into(),
        };
        let cs = gpu_checks(&h);
        let v = cs.iter().find(|c| c.name == "gpu-vfio").unwrap();
        assert_eq!(v.status, Status::Fail);
        assert!(v.fix.contains("vfio-pci") && v.fix.contains("0000:41:00.0"));
    }
}
