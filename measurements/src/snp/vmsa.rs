//! The initial VMSA (SEV-ES save area, one 4096-byte page per vCPU) that the
//! hypervisor hands to `SNP_LAUNCH_UPDATE`, as Linux/KVM under QEMU (and EC2,
//! GCE) builds it. Offsets are those of Linux `struct sev_es_save_area`
//! (arch/x86/include/asm/svm.h); all fields little-endian; every byte not set
//! here is zero.

use super::ovmf::PAGE_SIZE;
use super::Vmm;

/// Initial `EIP` of the bootstrap processor: the x86 reset vector.
pub const BSP_EIP: u32 = 0xffff_fff0;

/// A segment register in the save area: selector, attributes, limit, base.
#[derive(Clone, Copy)]
struct Seg {
    selector: u16,
    attrib: u16,
    limit: u32,
    base: u64,
}

const fn seg(selector: u16, attrib: u16, limit: u32, base: u64) -> Seg {
    Seg {
        selector,
        attrib,
        limit,
        base,
    }
}

struct Page([u8; PAGE_SIZE]);

impl Page {
    fn u16(&mut self, at: usize, v: u16) {
        self.0[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, at: usize, v: u32) {
        self.0[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, at: usize, v: u64) {
        self.0[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }
    fn seg(&mut self, at: usize, s: Seg) {
        self.u16(at, s.selector);
        self.u16(at + 2, s.attrib);
        self.u32(at + 4, s.limit);
        self.u64(at + 8, s.base);
    }
}

/// Builds the VMSA page of a vCPU that starts at `eip`.
///
/// `vcpu_sig` is the CPUID signature of the vCPU model, `sev_features` the guest
/// features (VMSA `SEV_FEATURES`). The VMMs differ in a few initial values:
/// segment attributes, `RDX`, `MXCSR`/`FCW` (set by KVM since Linux 6.9 for
/// QEMU) and, on GCE, the PAT MSR.
pub fn vmsa_page(eip: u32, vcpu_sig: u32, sev_features: u64, vmm: Vmm) -> [u8; PAGE_SIZE] {
    // (cs attrib, ss attrib, tr attrib, rdx, mxcsr, x87 fcw, g_pat)
    const PAT: u64 = 0x0007_0406_0007_0406; // power-on PAT: AMD APM vol. 2, A.3
    let (cs, ss, tr, rdx, mxcsr, fcw, g_pat) = match vmm {
        Vmm::Qemu => (0x9b, 0x93, 0x8b, u64::from(vcpu_sig), 0x1f80, 0x37f, PAT),
        Vmm::Ec2 | Vmm::Ec2Legacy => {
            // EC2 marks the BSP's CS as not accessed.
            let cs = if eip == BSP_EIP { 0x9a } else { 0x9b };
            // Since 2026 EC2 sets RDX to the reset value 0x600 (sev-snp-measure
            // PR #60, checked on a c6a instance); before, it left it zero (the
            // `sev` crate 8.0 and its test vectors model that).
            let rdx = if vmm == Vmm::Ec2 { 0x600 } else { 0 };
            (cs, 0x92, 0x83, rdx, 0, 0, PAT)
        }
        // The GCE hypervisor overwrites the default PAT.
        Vmm::Gce => (0x9b, 0x93, 0x8b, 0x600, 0, 0, 0x0007_0106),
    };
    let mut p = Page([0; PAGE_SIZE]);
    p.seg(0x000, seg(0, 0x93, 0xffff, 0)); // es
    p.seg(0x010, seg(0xf000, cs, 0xffff, u64::from(eip & 0xffff_0000))); // cs
    p.seg(0x020, seg(0, ss, 0xffff, 0)); // ss
    p.seg(0x030, seg(0, 0x93, 0xffff, 0)); // ds
    p.seg(0x040, seg(0, 0x93, 0xffff, 0)); // fs
    p.seg(0x050, seg(0, 0x93, 0xffff, 0)); // gs
    p.seg(0x060, seg(0, 0, 0xffff, 0)); // gdtr
    p.seg(0x070, seg(0, 0x82, 0xffff, 0)); // ldtr
    p.seg(0x080, seg(0, 0, 0xffff, 0)); // idtr
    p.seg(0x090, seg(0, tr, 0xffff, 0)); // tr
    p.u64(0x0d0, 0x1000); // efer: KVM sets EFER.SVME
    p.u64(0x148, 0x40); // cr4: KVM sets CR4.MCE
    p.u64(0x158, 0x10); // cr0
    p.u64(0x160, 0x400); // dr7
    p.u64(0x168, 0xffff_0ff0); // dr6
    p.u64(0x170, 0x2); // rflags
    p.u64(0x178, u64::from(eip & 0xffff)); // rip
    p.u64(0x268, g_pat); // g_pat
    p.u64(0x310, rdx); // rdx
    p.u64(0x3b0, sev_features); // sev_features
    p.u64(0x3e8, 0x1); // xcr0
    p.u32(0x408, mxcsr); // mxcsr
    p.u16(0x410, fcw); // x87_fcw
    p.0
}
