//! Hostile RA-TLS servers the agent binary cannot play: evidence of a
//! genuine node (playing the published release) served on a certificate for
//! another key, and fresh evidence replayed for every nonce. rustls on
//! 127.0.0.1, one thread per connection, gone after [`LIFETIME`].

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use chrysalis_attestation::verifier::Collateral;
use chrysalis_ratls::x509::{build_certificate, ratls_extensions, CertificateParams};
use chrysalis_ratls::{
    CertKey, EmbeddedCollateral, IdentityOptions, KeyType, RaTlsIdentity, ReloadableResolver,
};
use chrysalis_sim::{SimOverrides, SimProvider, SimRelease};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

use super::node::{RELEASE, SNP_CONFIGURATION};

/// How long a hostile server accepts connections.
const LIFETIME: Duration = Duration::from_secs(120);

/// What the hostile server does.
#[derive(Clone, Copy)]
pub enum Attack {
    /// A genuine node's evidence and claims in a certificate for the
    /// attacker's key (as if relayed from a node the attacker does not
    /// control).
    CopiedEvidence,
    /// A genuine node that answers every `/attestation?nonce=` with the
    /// evidence it made for one earlier nonce.
    ReplayedNonce,
}

/// A simulated SNP node playing the published configuration, launched
/// with the default host configuration: honest evidence.
fn honest() -> (SimProvider, RaTlsIdentity) {
    let release = SimRelease::builtin(RELEASE, SNP_CONFIGURATION, None).unwrap();
    let sim = SimProvider::configured(release.tee(), Some(&release), SimOverrides::new())
        .unwrap()
        .with_host_data(SimRelease::default_host_data());
    let collateral = Collateral::Snp(sim.snp_certificates().unwrap());
    let opts = IdentityOptions {
        collateral: Some(EmbeddedCollateral::from_collateral(&collateral)),
        ..IdentityOptions::default()
    };
    let identity = RaTlsIdentity::generate(&sim, &opts).unwrap();
    (sim, identity)
}

/// Starts the server; returns `https://ADDR`.
pub fn serve(attack: Attack) -> String {
    // The client binary first (a build may take longer than LIFETIME).
    super::node::bins();
    let (sim, genuine) = honest();
    let (identity, answer) = match attack {
        Attack::CopiedEvidence => {
            let other = CertKey::generate(KeyType::EcdsaP256).unwrap();
            let exts = ratls_extensions(
                genuine.evidence(),
                genuine.claims_bytes(),
                None,
                genuine.collateral(),
            )
            .unwrap();
            let now = time::OffsetDateTime::now_utc();
            let der = build_certificate(
                &other,
                &CertificateParams {
                    common_name: "chrysalis".into(),
                    subject_alt_names: vec![],
                    not_before: now - time::Duration::minutes(1),
                    not_after: now + time::Duration::hours(1),
                    critical_ext_key_usage: false,
                    extensions: exts,
                },
            )
            .unwrap();
            let id = RaTlsIdentity::assemble(other, der).unwrap();
            let fresh = chrysalis_ratls::fresh_evidence(&sim, &genuine, &[0x5a; 32]).unwrap();
            (id, fresh)
        }
        Attack::ReplayedNonce => {
            // Made for a nonce some earlier client sent.
            let fresh = chrysalis_ratls::fresh_evidence(&sim, &genuine, &[0x5a; 32]).unwrap();
            (genuine, fresh)
        }
    };
    let cfg = Arc::new(
        chrysalis_ratls::server_config_with(
            Arc::new(ReloadableResolver::new(&identity)),
            None,
            &[b"http/1.1".to_vec()],
        )
        .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let body = Arc::new(answer.to_json().unwrap());
    std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + LIFETIME;
        listener.set_nonblocking(true).unwrap();
        while std::time::Instant::now() < deadline {
            match listener.accept() {
                Ok((tcp, _)) => {
                    let (cfg, body) = (cfg.clone(), body.clone());
                    std::thread::spawn(move || answer_one(cfg, tcp, &body));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    format!("https://{addr}")
}

/// One connection: handshake, one request head, the fixed answer for
/// `/attestation`, `{}` otherwise.
fn answer_one(cfg: Arc<ServerConfig>, tcp: TcpStream, fresh: &str) {
    let _ = tcp.set_nonblocking(false);
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = tcp.set_write_timeout(Some(Duration::from_secs(10)));
    let Ok(conn) = ServerConnection::new(cfg) else {
        return;
    };
    let mut tls = StreamOwned::new(conn, tcp);
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let body = if head.starts_with(b"GET /attestation?") {
        fresh
    } else {
        "{}"
    };
    let answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tls.write_all(answer.as_bytes());
    tls.conn.send_close_notify();
    let _ = tls.flush();
}
