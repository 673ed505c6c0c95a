//! Shared helpers of the RA-TLS integration tests: simulated TEEs, identities
//! and a loopback TLS exchange.
#![allow(dead_code)] // each test binary uses a different subset

use std::io;
use std::sync::Arc;
use std::time::Duration;

use chrysalis_attestation::verifier::Collateral;
use chrysalis_attestation::{Policy, Tee};
use chrysalis_ratls::{EmbeddedCollateral, IdentityOptions, RaTlsIdentity, VerifierConfig};
use chrysalis_sim::SimProvider;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A simulated TEE of the given kind.
pub fn sim(tee: Tee) -> SimProvider {
    SimProvider::new(tee).expect("simulated TEE")
}

/// The collateral that verifies `sim`'s evidence.
pub fn sim_collateral(sim: &SimProvider) -> Collateral {
    match (sim.tdx_collateral(), sim.snp_certificates()) {
        (Some(t), _) => Collateral::Tdx(t),
        (None, Some(s)) => Collateral::Snp(s),
        (None, None) => unreachable!("a simulator has collateral"),
    }
}

/// Identity options embedding `sim`'s collateral.
pub fn opts_with_collateral(sim: &SimProvider) -> IdentityOptions {
    IdentityOptions {
        collateral: Some(EmbeddedCollateral::from_collateral(&sim_collateral(sim))),
        ..IdentityOptions::default()
    }
}

/// An identity with simulated evidence and embedded collateral.
pub fn identity(sim: &SimProvider) -> RaTlsIdentity {
    RaTlsIdentity::generate(sim, &opts_with_collateral(sim)).expect("identity")
}

/// Accepts simulated evidence (development policy).
pub fn dev_policy() -> Policy {
    Policy::default().allow_simulated(true)
}

/// Production anchors, `policy`, default cache.
pub fn config(policy: Policy) -> Arc<VerifierConfig> {
    Arc::new(VerifierConfig::new(policy))
}

/// What each side of [`exchange`] saw.
pub struct Outcome {
    /// The client's result: connect, send "ping", read "pong".
    pub client: io::Result<()>,
    /// The server's result: accept, read, answer; the client's certificates.
    pub server: io::Result<Option<Vec<CertificateDer<'static>>>>,
}

/// One TLS connection over 127.0.0.1: the client sends "ping", the server
/// answers "pong". A 60 s guard turns a hang into an error (a liveness
/// guard, not a timing assertion).
pub async fn exchange(server: Arc<ServerConfig>, client: Arc<ClientConfig>) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = TlsAcceptor::from(server);
    let srv = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = acceptor.accept(tcp).await?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        tls.write_all(b"pong").await?;
        tls.flush().await?;
        let certs = tls
            .get_ref()
            .1
            .peer_certificates()
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect());
        let _ = tls.shutdown().await;
        Ok::<_, io::Error>(certs)
    });
    let cli = async {
        let tcp = TcpStream::connect(addr).await?;
        let mut tls = TlsConnector::from(client)
            .connect(ServerName::try_from("ratls.invalid").expect("name"), tcp)
            .await?;
        tls.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        if &buf != b"pong" {
            return Err(io::Error::other("unexpected answer"));
        }
        Ok(())
    };
    let guard = Duration::from_secs(60);
    let client = tokio::time::timeout(guard, cli)
        .await
        .unwrap_or_else(|_| Err(io::Error::other("client timed out")));
    let server = match tokio::time::timeout(guard, srv).await {
        Ok(Ok(r)) => r,
        Ok(Err(join)) => Err(io::Error::other(join.to_string())),
        Err(_) => Err(io::Error::other("server timed out")),
    };
    Outcome { client, server }
}

/// This crate's error inside a connection error, or a panic naming it.
pub fn ratls_error(e: &io::Error) -> &chrysalis_ratls::Error {
    chrysalis_ratls::Error::find_in(e).unwrap_or_else(|| panic!("no RA-TLS error in {e:?}"))
}
