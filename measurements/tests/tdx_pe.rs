//! Authenticode digests and QEMU's kernel-header patch: structural checks on
//! synthetic PE files, and (when one is supplied) a real signed kernel whose
//! embedded signature carries an independently computed SHA-256
//! Authenticode digest.

use std::path::PathBuf;

use chrysalis_measurements::tdx::kernel::{qemu_patch, KernelLoad, QEMU_ACPI_DATA_SIZE};
use chrysalis_measurements::tdx::pe::{authenticode, authenticode_sha384, layout};
use proptest::prelude::*;
use sha2::{Digest, Sha256, Sha384};

/// A PE32+ file: DOS header, PE header, optional header with 16 data
/// directories, `sections` = (raw size, fill byte) laid out after the
/// headers with a 64-byte gap, then `trailer` and a certificate table of
/// `cert_len` bytes at the end.
fn pe(sections: &[(usize, u8)], trailer: &[u8], cert_len: usize) -> Vec<u8> {
    let pe_off = 0x80usize;
    let opt_size = 240usize; // PE32+ with 16 directories
    let headers = 0x200usize;
    let mut img = vec![0u8; headers];
    img[..2].copy_from_slice(b"MZ");
    img[0x3c..0x40].copy_from_slice(&(pe_off as u32).to_le_bytes());
    img[pe_off..pe_off + 4].copy_from_slice(b"PE\0\0");
    let coff = pe_off + 4;
    img[coff..coff + 2].copy_from_slice(&0x8664u16.to_le_bytes());
    img[coff + 2..coff + 4].copy_from_slice(&(sections.len() as u16).to_le_bytes());
    img[coff + 16..coff + 18].copy_from_slice(&(opt_size as u16).to_le_bytes());
    let opt = coff + 20;
    img[opt..opt + 2].copy_from_slice(&0x20bu16.to_le_bytes());
    img[opt + 60..opt + 64].copy_from_slice(&(headers as u32).to_le_bytes());
    img[opt + 64..opt + 68].copy_from_slice(&0xdead_beefu32.to_le_bytes()); // CheckSum
    img[opt + 108..opt + 112].copy_from_slice(&16u32.to_le_bytes());
    let mut ptr = headers + 64;
    let table = opt + opt_size;
    for (i, (size, _)) in sections.iter().enumerate() {
        let at = table + 40 * i;
        img[at..at + 8].copy_from_slice(format!(".s{i:<6}").as_bytes());
        img[at + 16..at + 20].copy_from_slice(&(*size as u32).to_le_bytes());
        img[at + 20..at + 24].copy_from_slice(&(ptr as u32).to_le_bytes());
        ptr += size;
    }
    img.resize(headers + 64, 0x77); // the gap, not hashed
    for (size, fill) in sections {
        img.extend(std::iter::repeat_n(*fill, *size));
    }
    img.extend_from_slice(trailer);
    if cert_len > 0 {
        let cert_dir = opt + 112 + 8 * 4;
        let at = img.len() as u32;
        img[cert_dir..cert_dir + 4].copy_from_slice(&at.to_le_bytes());
        img[cert_dir + 4..cert_dir + 8].copy_from_slice(&(cert_len as u32).to_le_bytes());
        img.extend(std::iter::repeat_n(0xcc, cert_len));
    }
    img
}

/// The Authenticode stream for `pe(...)`, written out: headers without
/// CheckSum and the certificate directory entry, sections in file order,
/// then the file from offset SUM_OF_BYTES_HASHED (headers + section sizes,
/// as the spec counts it — which, with the 64-byte gap, re-covers the end
/// of the last section) up to the certificate table.
fn expected(img: &[u8], sections: &[(usize, u8)], cert_len: usize) -> Vec<u8> {
    let opt = 0x84 + 20;
    let mut h = Sha384::new();
    h.update(&img[..opt + 64]);
    h.update(&img[opt + 68..opt + 144]);
    h.update(&img[opt + 152..0x200]);
    let mut sum = 0x200;
    for (size, fill) in sections {
        h.update(vec![*fill; *size]);
        sum += size;
    }
    h.update(&img[sum..img.len() - cert_len]);
    h.finalize().to_vec()
}

#[test]
fn authenticode_covers_exactly_what_the_spec_says() {
    let secs = [(0x300, 0x11), (0x100, 0x22)];
    let trailer = b"trailing data after the sections";
    let img = pe(&secs, trailer, 0x40);
    let l = layout(&img).unwrap();
    assert_eq!(l.cert_size, 0x40);
    let d = authenticode_sha384(&img).unwrap();
    assert_eq!(d.to_vec(), expected(&img, &secs, 0x40));
    // CheckSum, the certificate table and the header/section gap are not
    // covered; everything else is.
    let mut m = img.clone();
    m[0x84 + 20 + 64] ^= 0xff;
    assert_eq!(authenticode_sha384(&m).unwrap(), d);
    let mut m = img.clone();
    let n = m.len();
    m[n - 1] ^= 0xff;
    assert_eq!(authenticode_sha384(&m).unwrap(), d);
    let mut m = img.clone();
    m[0x210] ^= 0xff;
    assert_eq!(authenticode_sha384(&m).unwrap(), d);
    for at in [0x10, 0x84 + 22, 0x240, 0x600, n - 0x41] {
        let mut m = img.clone();
        m[at] ^= 0x01;
        assert_ne!(authenticode_sha384(&m).unwrap(), d, "byte {at:#x}");
    }
}

#[test]
fn sections_are_hashed_in_file_order_whatever_the_table_order() {
    let secs = [(0x100, 0x11), (0x100, 0x22)];
    let img = pe(&secs, b"", 0);
    let mut swapped = img.clone();
    let table = 0x84 + 20 + 240;
    let (a, b) = swapped.split_at_mut(table + 40);
    a[table..table + 40].swap_with_slice(&mut b[..40]);
    // The section headers are part of the hashed headers, so the digests
    // differ; but both follow the file order of the section data.
    assert_eq!(
        authenticode_sha384(&swapped).unwrap().to_vec(),
        expected(&swapped, &secs, 0)
    );
    assert_eq!(
        authenticode_sha384(&img).unwrap().to_vec(),
        expected(&img, &secs, 0)
    );
}

#[test]
fn broken_pe_files_are_rejected() {
    let img = pe(&[(0x100, 1)], b"", 0);
    assert!(authenticode_sha384(&img[..0x300])
        .unwrap_err()
        .contains("section 0"));
    let mut m = img.clone();
    m[0x84 + 20] = 0x99;
    assert!(authenticode_sha384(&m).unwrap_err().contains("magic"));
    let big_cert = pe(&[(0x100, 1)], b"", 0x40);
    let mut m = big_cert.clone();
    let cert_dir = 0x84 + 20 + 112 + 32;
    m[cert_dir + 4..cert_dir + 8].copy_from_slice(&0x10000u32.to_le_bytes());
    assert!(authenticode_sha384(&m)
        .unwrap_err()
        .contains("certificate table"));
    assert!(authenticode_sha384(b"\x7fELF")
        .unwrap_err()
        .contains("not a PE"));
}

/// A signed PE (e.g. Debian's `vmlinuz`, signed for Secure Boot): the
/// SHA-256 Authenticode digest in its signature's `SpcIndirectDataContent`
/// was computed by the signer; ours must equal it. Set
/// `CHRYSALIS_TEST_SIGNED_PE=path`.
#[test]
fn signed_pe_digest_matches_its_signature() {
    let Some(path) = std::env::var_os("CHRYSALIS_TEST_SIGNED_PE").map(PathBuf::from) else {
        println!("skipping: set CHRYSALIS_TEST_SIGNED_PE to a signed PE file");
        return;
    };
    let img = std::fs::read(&path).unwrap();
    // DigestInfo { sha256 OID, NULL, OCTET STRING(32) }
    let pattern = hex::decode("0609608648016503040201050004 20".replace(' ', "")).unwrap();
    let at = img
        .windows(pattern.len())
        .position(|w| w == pattern)
        .expect("no SHA-256 DigestInfo in the signature");
    let signed = &img[at + pattern.len()..at + pattern.len() + 32];
    let ours = authenticode::<Sha256>(&img).unwrap();
    println!(
        "{}: signature {} computed {}",
        path.display(),
        hex::encode(signed),
        hex::encode(&ours)
    );
    assert_eq!(hex::encode(&ours), hex::encode(signed));
    println!(
        "sha384 authenticode {}",
        hex::encode(authenticode_sha384(&img).unwrap())
    );

    // If it is a bzImage, QEMU's patch touches only the documented fields.
    if img.get(0x202..0x206) == Some(b"HdrS") {
        let load = KernelLoad {
            memory_bytes: 2 << 30,
            initrd_size: Some(50 << 20),
            cmdline: "console=ttyS0 vga=normal".into(),
            acpi_data_size: QEMU_ACPI_DATA_SIZE,
        };
        let patched = qemu_patch(&img, &load).unwrap();
        let allowed = [
            0x1fa..0x1fc,
            0x210..0x212,
            0x218..0x220,
            0x224..0x226,
            0x228..0x22c,
        ];
        for (i, (a, b)) in img.iter().zip(&patched).enumerate() {
            if a != b {
                assert!(
                    allowed.iter().any(|r| r.contains(&i)),
                    "byte {i:#x} changed"
                );
            }
        }
        println!(
            "patched sha384 authenticode {}",
            hex::encode(authenticode_sha384(&patched).unwrap())
        );
        // Debian's linux-image-6.12.117+deb13-amd64 vmlinuz: dstack-mr
        // (Dstack-TEE/dstack@312dc605) gives this patched-kernel digest for a
        // 5,000,000-byte initrd at its "high memory" size 0xB0000000.
        let (sha, _) = chrysalis_measurements::tdx::sha256_file(&path).unwrap();
        if hex::encode(sha) == "14159c607ad9762133db41e479dafecde1d6a5fe715a8d65d292a3262e4b6bed" {
            let load = KernelLoad {
                memory_bytes: 0xB000_0000,
                initrd_size: Some(5_000_000),
                cmdline: "console=ttyS0".into(),
                acpi_data_size: QEMU_ACPI_DATA_SIZE,
            };
            let d = authenticode_sha384(&qemu_patch(&img, &load).unwrap()).unwrap();
            assert_eq!(
                hex::encode(d),
                "e7df35ad473d2dd6af22a63cc63d2cad9ac11f5d9a9e654cf3148e2b6b352aa0f5c019107a14caecd9e95e481e5c7cf0"
            );
            println!("matches dstack-mr's patched-kernel digest");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn pe_parser_is_total(pos in 0usize..0x800, val in any::<u8>(), cut in 0usize..0x800) {
        let mut img = pe(&[(0x100, 1), (0x80, 2)], b"tail", 0x10);
        if pos < img.len() { img[pos] = val; }
        img.truncate(cut);
        let _ = authenticode_sha384(&img);
    }

    #[test]
    fn kernel_patch_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..0x1200),
                             proto in any::<u16>(), mem in any::<u64>(), initrd in proptest::option::of(any::<u64>()),
                             acpi in any::<u32>(), cmdline in "\\PC{0,40}") {
        let mut k = bytes;
        if k.len() >= 0x240 {
            k[0x202..0x206].copy_from_slice(b"HdrS");
            k[0x206..0x208].copy_from_slice(&proto.to_le_bytes());
        }
        let load = KernelLoad { memory_bytes: mem, initrd_size: initrd, cmdline, acpi_data_size: acpi };
        let _ = qemu_patch(&k, &load);
    }
}
