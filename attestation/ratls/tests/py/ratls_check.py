#!/usr/bin/env python3
"""Independent check of a Chrysalis RA-TLS certificate, written from SPEC.md.

This client shares no code with the Rust crate: it uses only Python's `ssl`
and `hashlib`, the `cryptography` package for X.509, and a small DER reader
below. It proves that the certificate format can be implemented by an
outsider from the specification alone.

Usage:
    ratls_check.py HOST:PORT [--timeout S]   # TLS 1.3 handshake, then check
    ratls_check.py --cert FILE               # offline: a DER or PEM file

What is checked (SPEC.md sections 1-3 and 5, steps 1, 3 and 4):
  * the certificate parses; the RA-TLS extensions are found by their OIDs
    (`2.25.<uuid>.N`), each at most once, with the criticality of section 2;
    no unknown critical extension;
  * the evidence extension is an OCTET STRING holding a TDX quote (v4/v5)
    or a 1184-byte SNP report; the claims extension is DER `RaTlsClaims`
    (strict DER: minimal lengths, no trailing bytes, fields in order);
  * the self-signature verifies with the certificate's own key;
  * report_data of the evidence == SHA-512(claims DER);
  * claims subjectPublicKeyInfo == the certificate's SubjectPublicKeyInfo,
    byte for byte (the raw bytes in the TBSCertificate and the re-encoding
    of `cryptography`);
  * claims purpose == certificate, claims tee == the evidence's TEE, the
    GPU digest extension == claims gpuEvidenceDigest (both absent or equal).

Not checked (they need Intel/AMD collateral and a policy, SPEC.md section 5
steps 2, 5 and 6): validity dates (reported only), the evidence's own
signatures and chain, TCB status and measurements.

Prints one JSON line and exits with
  0  the binding holds;
  2  the certificate is malformed (not X.509, missing or bad extension,
     claims not DER, evidence of an unknown shape);
  3  the certificate is well formed but the binding fails;
  4  the connection failed (network, TLS);
  64 bad command line.
"""

import argparse
import datetime
import hashlib
import json
import socket
import ssl
import sys

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

# --- Section 1: object identifiers -----------------------------------------

ARC = "2.25.165283375369106195242582353339650268514"
UUID = "7c586b91-c959-44ed-8110-60848a05dd62"
OID_EVIDENCE = x509.ObjectIdentifier(ARC + ".1")
OID_GPU_DIGEST = x509.ObjectIdentifier(ARC + ".2")
OID_CLAIMS = x509.ObjectIdentifier(ARC + ".3")
OID_COLLATERAL = x509.ObjectIdentifier(ARC + ".4")
# The content octets the spec gives for the arc (before the leaf byte).
SPEC_ARC_CONTENT = bytes.fromhex("6981f8d8b5e4b995ca93db81889890c8d097ba62")
# Extensions that may be critical besides the RA-TLS ones (section 5 step 1):
# basicConstraints, keyUsage, extKeyUsage, subjectAltName.
KNOWN_CRITICAL = {"2.5.29.19", "2.5.29.15", "2.5.29.37", "2.5.29.17"}

# --- Evidence layouts (Intel TDX DCAP quote v4/v5, AMD SEV-SNP ABI) ---------

TDX_HEADER_LEN = 48
TDX_TEE_TYPE = 0x00000081
TD_REPORT_DATA_OFFSET = 520  # in the TD report body (TDX 1.0 and 1.5)
TD10_BODY_LEN = 584
TD15_BODY_LEN = 648
SNP_REPORT_LEN = 1184
SNP_REPORT_DATA = slice(0x50, 0x90)

EXIT_OK, EXIT_MALFORMED, EXIT_BINDING, EXIT_CONNECT, EXIT_USAGE = 0, 2, 3, 4, 64


class Malformed(Exception):
    """The certificate does not follow the profile (exit 2)."""


class BindingFailure(Exception):
    """Well formed, but the evidence is not bound to this key (exit 3)."""


def oid_content(dotted):
    """DER content octets of a dotted OID (X.690 8.19), big arcs included."""
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray()
    for i, arc in enumerate([40 * arcs[0] + arcs[1]] + arcs[2:]):
        groups = [arc & 0x7F]
        arc >>= 7
        while arc:
            groups.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(groups))
    return bytes(out)


def spec_self_check():
    """The two forms the spec gives for the OIDs must agree."""
    assert int(UUID.replace("-", ""), 16) == int(ARC.split(".")[2]), "UUID != arc"
    for leaf, oid in enumerate(
        (OID_EVIDENCE, OID_GPU_DIGEST, OID_CLAIMS, OID_COLLATERAL), start=1
    ):
        content = oid_content(oid.dotted_string)
        assert content == SPEC_ARC_CONTENT + bytes([leaf]), oid.dotted_string
        assert len(content) == 0x15, "spec: length 15 (hex)"


# --- A minimal strict DER reader -------------------------------------------


class Der:
    """Reads DER TLVs from `buf[pos:end]`, rejecting BER-only forms."""

    def __init__(self, buf, what, pos=0, end=None):
        self.buf, self.what, self.pos = buf, what, pos
        self.end = len(buf) if end is None else end

    def fail(self, msg, at=None):
        at = self.pos if at is None else at
        raise Malformed(f"{self.what}: {msg} at offset {at}")

    def at_end(self):
        return self.pos >= self.end

    def peek_tag(self):
        return None if self.at_end() else self.buf[self.pos]

    def read(self, want_tag=None):
        """One TLV: returns (tag, content bytes, whole TLV bytes)."""
        start = self.pos
        if self.end - self.pos < 2:
            self.fail("truncated TLV")
        tag = self.buf[self.pos]
        if tag & 0x1F == 0x1F:
            self.fail("multi-byte tags are not used here")
        if want_tag is not None and tag != want_tag:
            self.fail(f"tag 0x{tag:02x}, expected 0x{want_tag:02x}")
        first = self.buf[self.pos + 1]
        self.pos += 2
        if first < 0x80:
            length = first
        elif first == 0x80:
            self.fail("indefinite length (BER, not DER)", start)
        else:
            n = first & 0x7F
            if n > 4 or self.end - self.pos < n:
                self.fail("bad length of length", start)
            raw = self.buf[self.pos : self.pos + n]
            self.pos += n
            if raw[0] == 0:
                self.fail("non-minimal length (leading zero)", start)
            length = int.from_bytes(raw, "big")
            if length < 0x80:
                self.fail("non-minimal length (long form below 128)", start)
        if self.end - self.pos < length:
            self.fail(f"length {length} runs past the end", start)
        content = self.buf[self.pos : self.pos + length]
        self.pos += length
        return tag, content, self.buf[start : self.pos]

    def sub(self, content_tag, what):
        """A reader over the content of the next TLV (a constructed one)."""
        start = self.pos
        _, content, whole = self.read(content_tag)
        body = start + len(whole) - len(content)
        return Der(self.buf, what, body, body + len(content))

    def done(self):
        if not self.at_end():
            self.fail(f"{self.end - self.pos} trailing bytes")


def der_uint(content, what):
    """A non-negative INTEGER/ENUMERATED content in minimal two's complement."""
    if not content:
        raise Malformed(f"{what}: empty integer")
    if len(content) > 1 and (
        (content[0] == 0 and content[1] < 0x80)
        or (content[0] == 0xFF and content[1] >= 0x80)
    ):
        raise Malformed(f"{what}: non-minimal integer")
    if content[0] & 0x80:
        raise Malformed(f"{what}: negative")
    return int.from_bytes(content, "big")


def parse_claims(der):
    """RaTlsClaims (section 2), IMPLICIT TAGS."""
    top = Der(der, "claims")
    seq = top.sub(0x30, "claims")
    top.done()
    c = {}
    c["version"] = der_uint(seq.read(0x02)[1], "claims.version")
    if c["version"] != 1:
        raise Malformed(f"claims.version {c['version']} is not v1(1)")
    purpose = der_uint(seq.read(0x0A)[1], "claims.purpose")
    c["purpose"] = {1: "certificate", 2: "freshEvidence"}.get(purpose)
    if c["purpose"] is None:
        raise Malformed(f"claims.purpose {purpose} unknown")
    tee = der_uint(seq.read(0x0A)[1], "claims.tee")
    c["tee"] = {1: "tdx", 2: "snp"}.get(tee)
    if c["tee"] is None:
        raise Malformed(f"claims.tee {tee} unknown")
    # SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier,
    # subjectPublicKey BIT STRING }: kept as its whole TLV for the comparison.
    spki_start = seq.pos
    spki = seq.sub(0x30, "claims.subjectPublicKeyInfo")
    spki.read(0x30)
    spki.read(0x03)
    spki.done()
    seq.pos = spki.end
    c["spki"] = der[spki_start : spki.end]
    c["created_at"] = der_uint(seq.read(0x02)[1], "claims.createdAt")
    c["nonce"] = c["image"] = c["gpu_evidence_digest"] = None
    if seq.peek_tag() == 0x80:  # [0] IMPLICIT OCTET STRING
        c["nonce"] = seq.read(0x80)[1]
        if not 1 <= len(c["nonce"]) <= 64:
            raise Malformed(f"claims.nonce is {len(c['nonce'])} bytes, not 1..64")
    if seq.peek_tag() == 0xA1:  # [1] IMPLICIT ImageIdentifiers (constructed)
        img = seq.sub(0xA1, "claims.image")
        c["image"] = {}
        if img.peek_tag() == 0x80:  # [0] IMPLICIT UTF8String
            raw = img.read(0x80)[1]
            try:
                c["image"]["release"] = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise Malformed(f"claims.image.release: {e}") from e
            if not 1 <= len(raw) <= 256:
                raise Malformed(f"claims.image.release is {len(raw)} bytes")
        if img.peek_tag() == 0x81:  # [1] IMPLICIT OCTET STRING (SIZE(32))
            m = img.read(0x81)[1]
            if len(m) != 32:
                raise Malformed(f"claims.image.measurementsSha256 is {len(m)} bytes")
            c["image"]["measurements_sha256"] = m.hex()
        img.done()
        seq.pos = img.end
    if seq.peek_tag() == 0x82:  # [2] IMPLICIT OCTET STRING (SIZE(48))
        g = seq.read(0x82)[1]
        if len(g) != 48:
            raise Malformed(f"claims.gpuEvidenceDigest is {len(g)} bytes")
        c["gpu_evidence_digest"] = g
    seq.done()
    return c


def octet_string(value, what):
    """The content of a DER OCTET STRING that is the whole of `value`."""
    r = Der(value, what)
    content = r.read(0x04)[1]
    r.done()
    return content


def certificate_layout(der):
    """Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm,
    signatureValue }, with no trailing bytes and the same algorithm
    identifier outside and inside the TBSCertificate (section 5 step 1).
    Returns the SubjectPublicKeyInfo TLV exactly as the TBSCertificate
    holds it."""
    top = Der(der, "certificate")
    cert = top.sub(0x30, "certificate")
    top.done()
    tbs = cert.sub(0x30, "tbsCertificate")
    cert.pos = tbs.end
    outer_alg = cert.read(0x30)[2]
    cert.read(0x03)
    cert.done()
    if tbs.peek_tag() == 0xA0:  # version [0] EXPLICIT
        tbs.read(0xA0)
    tbs.read(0x02)  # serialNumber
    inner_alg = tbs.read(0x30)[2]
    if inner_alg != outer_alg:
        raise Malformed("signatureAlgorithm differs from tbsCertificate.signature")
    for _field in ("issuer", "validity", "subject"):
        tbs.read(0x30)
    return tbs.read(0x30)[2]


# --- Evidence ----------------------------------------------------------------


def evidence_report_data(ev):
    """(tee, detail, report_data) of a TDX quote v4/v5 or an SNP report."""
    if len(ev) >= 8:
        version = int.from_bytes(ev[0:2], "little")
        tee_type = int.from_bytes(ev[4:8], "little")
        if version in (4, 5) and tee_type == TDX_TEE_TYPE:
            if version == 4:
                # Header, then the TD report 1.0 body.
                body = TDX_HEADER_LEN
                body_len = TD10_BODY_LEN
            else:
                # Header, then body descriptor: type (u16 LE), size (u32 LE).
                body_type = int.from_bytes(ev[48:50], "little")
                body_len = int.from_bytes(ev[50:54], "little")
                body = TDX_HEADER_LEN + 6
                expected = {2: TD10_BODY_LEN, 3: TD15_BODY_LEN}.get(body_type)
                if expected is None or body_len != expected:
                    raise Malformed(
                        f"TDX quote v5 body type {body_type} size {body_len} unknown"
                    )
            # Then the signature data: its length (u32 LE) and that many
            # bytes, which end the quote ("no padding after a TDX quote").
            sig_at = body + body_len
            if len(ev) < sig_at + 4:
                raise Malformed(f"TDX quote v{version} truncated ({len(ev)} bytes)")
            end = sig_at + 4 + int.from_bytes(ev[sig_at : sig_at + 4], "little")
            if end != len(ev):
                raise Malformed(
                    f"TDX quote v{version}: signature data ends at {end}, "
                    f"the evidence is {len(ev)} bytes"
                )
            at = body + TD_REPORT_DATA_OFFSET
            return "tdx", {"quote_version": version, "report_data_offset": at}, ev[at : at + 64]
    if len(ev) == SNP_REPORT_LEN:
        version = int.from_bytes(ev[0:4], "little")
        detail = {"report_version": version, "report_data_offset": SNP_REPORT_DATA.start}
        return "snp", detail, ev[SNP_REPORT_DATA]
    raise Malformed(f"evidence of {len(ev)} bytes is neither a TDX quote nor an SNP report")


# --- The check ---------------------------------------------------------------


def load_certificate(data):
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as e:
        raise Malformed(f"not an X.509 certificate: {e}") from e


def check(cert_der_or_pem):
    result = {"binding_ok": False}
    cert = load_certificate(cert_der_or_pem)
    result["sha256"] = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    # `cryptography` keeps the bytes it parsed; PEM input is DER inside.
    spki_raw = certificate_layout(cert.public_bytes(serialization.Encoding.DER))
    if cert.version != x509.Version.v3:
        raise Malformed(f"X.509 {cert.version}, not v3")
    try:
        exts = list(cert.extensions)  # raises on a duplicated extension
    except (ValueError, x509.DuplicateExtension) as e:
        raise Malformed(f"extensions: {e}") from e
    ratls = {}
    for e in exts:
        if e.oid in (OID_EVIDENCE, OID_GPU_DIGEST, OID_CLAIMS, OID_COLLATERAL):
            ratls[e.oid] = e
        elif e.critical and e.oid.dotted_string not in KNOWN_CRITICAL:
            raise Malformed(f"unknown critical extension {e.oid.dotted_string}")
    for oid, name in ((OID_EVIDENCE, "evidence"), (OID_CLAIMS, "claims")):
        if oid not in ratls:
            raise Malformed(f"no {name} extension {oid.dotted_string}")
        if not ratls[oid].critical:
            raise Malformed(f"the {name} extension is not critical")
    if OID_GPU_DIGEST in ratls and not ratls[OID_GPU_DIGEST].critical:
        raise Malformed("the GPU evidence digest extension is not critical")
    if OID_COLLATERAL in ratls and ratls[OID_COLLATERAL].critical:
        raise Malformed("the collateral extension is critical")

    # For unknown OIDs `cryptography` gives the extnValue contents as they are.
    evidence = octet_string(ratls[OID_EVIDENCE].value.value, "evidence extension")
    claims_der = ratls[OID_CLAIMS].value.value
    claims = parse_claims(claims_der)
    gpu_ext = None
    if OID_GPU_DIGEST in ratls:
        gpu_ext = octet_string(ratls[OID_GPU_DIGEST].value.value, "GPU digest extension")
        if len(gpu_ext) != 48:
            raise Malformed(f"GPU digest extension is {len(gpu_ext)} bytes, not 48")
    tee, detail, report_data = evidence_report_data(evidence)

    spki_reenc = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    expected_rd = hashlib.sha512(claims_der).digest()

    result.update(
        tee=tee,
        evidence_len=len(evidence),
        **detail,
        claims_tee=claims["tee"],
        purpose=claims["purpose"],
        created_at=claims["created_at"],
        image=claims["image"],
        gpu_evidence_digest=claims["gpu_evidence_digest"].hex()
        if claims["gpu_evidence_digest"]
        else None,
        has_collateral=OID_COLLATERAL in ratls,
        key=type(cert.public_key()).__name__,
        not_before=cert.not_valid_before_utc.isoformat(),
        not_after=cert.not_valid_after_utc.isoformat(),
        currently_valid=cert.not_valid_before_utc
        <= datetime.datetime.now(datetime.timezone.utc)
        <= cert.not_valid_after_utc,
        report_data=report_data.hex(),
        sha512_claims=expected_rd.hex(),
    )
    checks = {
        "self_signature": self_signature_ok(cert),
        "report_data_is_sha512_of_claims": report_data == expected_rd,
        "claims_spki_is_cert_spki": claims["spki"] == spki_raw,
        "claims_spki_is_reencoded_spki": claims["spki"] == spki_reenc,
        "purpose_is_certificate": claims["purpose"] == "certificate",
        "claims_tee_is_evidence_tee": claims["tee"] == tee,
        "gpu_digest_matches": gpu_ext == claims["gpu_evidence_digest"],
    }
    result["checks"] = checks
    result["binding_ok"] = all(checks.values())
    if not result["binding_ok"]:
        failed = [k for k, v in checks.items() if not v]
        raise BindingFailure(result, "failed: " + ", ".join(failed))
    return result


def self_signature_ok(cert):
    try:
        cert.verify_directly_issued_by(cert)
        return True
    except Exception:  # InvalidSignature, ValueError, TypeError: all "no"
        return False


def fetch_certificate(host, port, timeout):
    """TLS 1.3 handshake; returns (peer certificate DER, details)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    # Self-signed: the evidence, not a CA, vouches for the key. OpenSSL still
    # checks the TLS 1.3 CertificateVerify signature with the certificate's
    # key (proof of possession, SPEC.md section 5 step 7).
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=timeout) as tcp:
        with ctx.wrap_socket(tcp, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
            info = {"tls_version": tls.version(), "cipher": tls.cipher()[0]}
            tls.sendall(b"GET / HTTP/1.1\r\nHost: ratls\r\nConnection: close\r\n\r\n")
            answer = b""
            while len(answer) < 65536:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                answer += chunk
            info["http_status"] = answer.split(b"\r\n", 1)[0].decode("latin-1")
            info["http_body"] = answer.split(b"\r\n\r\n", 1)[-1].decode("latin-1")
    if der is None:
        raise ssl.SSLError("the server sent no certificate")
    return der, info


class Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def emit(obj):
    print(json.dumps(obj, sort_keys=True), flush=True)


def main(argv):
    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("target", nargs="?", help="HOST:PORT of an RA-TLS server")
    p.add_argument("--cert", help="check this DER or PEM certificate file instead")
    p.add_argument("--timeout", type=float, default=30.0, help="socket timeout, seconds")
    args = p.parse_args(argv)
    if (args.target is None) == (args.cert is None):
        p.error("give exactly one of HOST:PORT or --cert FILE")
    spec_self_check()

    extra = {}
    if args.cert:
        try:
            with open(args.cert, "rb") as f:
                data = f.read()
        except OSError as e:
            emit({"binding_ok": False, "error": f"reading {args.cert}: {e}"})
            return EXIT_USAGE
        extra["source"] = args.cert
    else:
        host, sep, port = args.target.rpartition(":")
        if not sep or not port.isdigit():
            p.error(f"{args.target!r} is not HOST:PORT")
        try:
            data, info = fetch_certificate(host, int(port), args.timeout)
        except (OSError, ssl.SSLError) as e:
            emit({"binding_ok": False, "error": f"connecting to {args.target}: {e}"})
            return EXIT_CONNECT
        extra["source"] = args.target
        extra.update(info)

    try:
        result = check(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        # Raised by `cryptography` on parts it decodes lazily (the key).
        emit({"binding_ok": False, "malformed": True, "error": f"{type(e).__name__}: {e}", **extra})
        return EXIT_MALFORMED
    except Malformed as e:
        emit({"binding_ok": False, "malformed": True, "error": str(e), **extra})
        return EXIT_MALFORMED
    except BindingFailure as e:
        result, why = e.args
        emit({**result, "error": why, **extra})
        return EXIT_BINDING
    emit({**result, **extra})
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
