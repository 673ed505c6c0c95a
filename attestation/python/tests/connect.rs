//! The Rust core of the Python client against in-process servers: the
//! genuine simulated RA-TLS server and the impostors of
//! `examples/test_server.rs`, through both the blocking stream and the
//! sans-I/O session.

#[path = "../examples/test_server.rs"]
#[allow(dead_code)]
mod test_server;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use chrysalis_attestation::{Policy, Tee};
use chrysalis_py::{Client, ErrorKind, Plaintext, Target};
use test_server::{serve_connection, server_config, Mode, Outcome, RESPONSE};

const TIMEOUT: Option<Duration> = Some(Duration::from_secs(30));
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

/// A server for one connection; join it for what it saw.
fn server(mode: Mode, tee: Tee) -> (Target, JoinHandle<Outcome>) {
    let cfg = server_config(mode, tee).expect("server config");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let handle = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().expect("accept");
        serve_connection(cfg, tcp)
    });
    (Target::new("127.0.0.1", port).expect("target"), handle)
}

fn sim_client() -> Client {
    Client::new(Policy::default(), true)
}

#[test]
fn genuine_server_is_verified_and_answers() {
    for tee in [Tee::Tdx, Tee::Snp] {
        let (target, srv) = server(Mode::Genuine, tee);
        let mut s = sim_client().connect(&target, TIMEOUT).expect("connect");
        let id = s.identity().clone();
        assert_eq!(id.tee, tee.to_string());
        assert!(id.simulated);
        assert_eq!(s.alpn(), Some(&b"http/1.1"[..]));
        s.write_all(REQUEST, TIMEOUT).expect("write");
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let n = s.read(&mut buf, TIMEOUT).expect("read");
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, RESPONSE);
        s.close();
        let o = srv.join().expect("server");
        assert!(o.handshake_ok);
        assert_eq!(o.received, REQUEST.len());
    }
}

#[test]
fn default_policy_rejects_simulated_evidence_before_any_byte() {
    let (target, srv) = server(Mode::Genuine, Tee::Tdx);
    let e = Client::new(Policy::default(), false)
        .connect(&target, TIMEOUT)
        .expect_err("simulated evidence must be rejected");
    assert_eq!(e.kind(), ErrorKind::Rejected, "{e}");
    assert!(!e.reasons().is_empty());
    assert!(e.to_string().contains("rejected by policy"), "{e}");
    let o = srv.join().expect("server");
    assert!(!o.handshake_ok, "{o:?}");
    assert_eq!(o.received, 0);
}

#[test]
fn allow_simulated_in_the_policy_file_counts_too() {
    let policy = chrysalis_py::policy_from_toml("allow_simulated = true").expect("policy");
    let (target, srv) = server(Mode::Genuine, Tee::Tdx);
    let mut s = Client::new(policy, false)
        .connect(&target, TIMEOUT)
        .expect("connect");
    s.close();
    srv.join().expect("server");
}

#[test]
fn impostors_are_refused_with_what_was_wrong() {
    for (mode, kind, words) in [
        (
            Mode::CopiedEvidence,
            ErrorKind::Verification,
            "key not bound in evidence",
        ),
        (
            Mode::StolenCert,
            ErrorKind::Verification,
            "handshake signature invalid",
        ),
        (Mode::Plain, ErrorKind::Malformed, "no evidence extension"),
    ] {
        let (target, srv) = server(mode, Tee::Tdx);
        let e = sim_client()
            .connect(&target, TIMEOUT)
            .expect_err("impostor accepted");
        assert_eq!(e.kind(), kind, "{mode:?}: {e}");
        assert!(e.to_string().contains(words), "{mode:?}: {e}");
        let o = srv.join().expect("server");
        assert_eq!(o.received, 0, "{mode:?}: {o:?}");
    }
}

/// Drives a session over a blocking socket, as the async transport does
/// over an event loop's.
fn session_handshake(
    client: &Client,
    target: &Target,
) -> (
    chrysalis_py::TlsSession,
    TcpStream,
    chrysalis_py::Result<()>,
) {
    let mut session = client.session(target).expect("session");
    let mut tcp = TcpStream::connect((target.host.as_str(), target.port)).expect("tcp");
    tcp.set_read_timeout(TIMEOUT).expect("timeout");
    let mut buf = vec![0u8; 65536];
    let result = (|| {
        tcp.write_all(&session.data_to_send()).expect("send");
        while session.is_handshaking() {
            let n = tcp.read(&mut buf).expect("recv");
            let r = session.receive(&buf[..n]);
            tcp.write_all(&session.data_to_send()).expect("send");
            r?;
        }
        Ok(())
    })();
    (session, tcp, result)
}

#[test]
fn sans_io_session_verifies_and_carries_http() {
    let (target, srv) = server(Mode::Genuine, Tee::Snp);
    let (mut session, mut tcp, result) = session_handshake(&sim_client(), &target);
    result.expect("handshake");
    assert_eq!(session.identity().expect("identity").tee, "snp");
    session.write(REQUEST).expect("write");
    tcp.write_all(&session.data_to_send()).expect("send");
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        match session.read(7).expect("read") {
            Plaintext::Data(d) => {
                assert!(d.len() <= 7);
                got.extend_from_slice(&d);
            }
            Plaintext::Eof => break,
            Plaintext::WouldBlock => {
                let n = tcp.read(&mut buf).expect("recv");
                session.receive(&buf[..n]).expect("receive");
            }
        }
    }
    assert_eq!(got, RESPONSE);
    session.close();
    let _ = tcp.write_all(&session.data_to_send());
    let o = srv.join().expect("server");
    assert_eq!(o.received, REQUEST.len());
}

#[test]
fn large_responses_cross_the_plaintext_buffer_limit() {
    // Blocking stream.
    let (target, srv) = server(Mode::Genuine, Tee::Tdx);
    let mut s = sim_client().connect(&target, TIMEOUT).expect("connect");
    s.write_all(b"GET /big HTTP/1.1\r\n\r\n", TIMEOUT)
        .expect("write");
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let n = s.read(&mut buf, TIMEOUT).expect("read");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.ends_with(&test_server::big_body()));
    srv.join().expect("server");

    // Sans-I/O session fed a whole socket buffer at a time, read in small
    // pieces: rustls's plaintext buffer fills and the rest must wait.
    let (target, srv) = server(Mode::Genuine, Tee::Tdx);
    let (mut session, mut tcp, result) = session_handshake(&sim_client(), &target);
    result.expect("handshake");
    session.write(b"GET /big HTTP/1.1\r\n\r\n").expect("write");
    tcp.write_all(&session.data_to_send()).expect("send");
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match session.read(1000).expect("read") {
            Plaintext::Data(d) => got.extend_from_slice(&d),
            Plaintext::Eof => break,
            Plaintext::WouldBlock => {
                let n = tcp.read(&mut buf).expect("recv");
                session.receive(&buf[..n]).expect("receive");
            }
        }
    }
    assert!(got.ends_with(&test_server::big_body()));
    srv.join().expect("server");
}

#[test]
fn sans_io_session_refuses_impostor_and_writes_nothing() {
    let (target, srv) = server(Mode::CopiedEvidence, Tee::Tdx);
    let (mut session, _tcp, result) = session_handshake(&sim_client(), &target);
    let e = result.expect_err("impostor accepted");
    assert_eq!(e.kind(), ErrorKind::Verification, "{e}");
    assert!(session.identity().is_none());
    assert!(session.write(REQUEST).is_err());
    assert!(session.data_to_send().is_empty());
    let o = srv.join().expect("server");
    assert_eq!(o.received, 0);
}

#[test]
fn connection_failures_are_connection_errors() {
    // A port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let e = sim_client()
        .connect(&Target::new("127.0.0.1", port).expect("target"), TIMEOUT)
        .expect_err("nothing listens");
    assert_eq!(e.kind(), ErrorKind::Connection, "{e}");

    // A server that accepts and never answers: the handshake times out.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let e = sim_client()
        .connect(
            &Target::new("127.0.0.1", port).expect("target"),
            Some(Duration::from_millis(300)),
        )
        .expect_err("silent server");
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.to_string().contains("TLS handshake timed out"), "{e}");
    drop(silent);
}

#[test]
fn offline_certificate_verification_matches_the_connection() {
    let id = test_server::sim_identity(Tee::Tdx).expect("identity");
    let view = sim_client()
        .verify_certificate(id.cert_der())
        .expect("verify");
    assert_eq!(view.tee, "tdx");
    let e = Client::new(Policy::default(), false)
        .verify_certificate(id.cert_der())
        .expect_err("simulated");
    assert_eq!(e.kind(), ErrorKind::Rejected);
    let e = sim_client().verify_certificate(b"junk").expect_err("junk");
    assert_eq!(e.kind(), ErrorKind::Malformed, "{e}");
}
