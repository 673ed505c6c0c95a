//! What `verify_node` adds to a new connection, against a plain TLS 1.3
//! connect to the same server, in one run.
//!
//! A loopback RA-TLS server (simulated SNP evidence, collateral embedded,
//! `/attestation?nonce=` answered like the agent does) is started in this
//! process. Each sample is one new TCP connection:
//!
//! * `plain TLS connect`: TCP + TLS 1.3 handshake, certificate not checked
//!   (the floor any TLS client pays);
//! * `verify_node, cold`: a new `NodeConfig` per connection (no cache):
//!   handshake with evidence verification, nonce round trip, fresh
//!   evidence verification, policy;
//! * `verify_node, cached`: one `NodeConfig` for all connections (the
//!   certificate's verification comes from the cache; the fresh evidence,
//!   bound to a new nonce, is always verified).
//!
//! Prints median and p99 of each and the ratio to the plain connect.
//! `cargo bench -p chrysalis-client --bench verify_node [-- SAMPLES]`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrysalis_attestation::verifier::Collateral;
use chrysalis_attestation::{Policy, Tee};
use chrysalis_client::{ImagePin, NodeConfig};
use chrysalis_ratls::{EmbeddedCollateral, IdentityOptions, RaTlsIdentity};
use chrysalis_sim::SimProvider;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;

fn server(rt: &tokio::runtime::Runtime) -> (SocketAddr, Policy, Vec<u8>) {
    let sim = SimProvider::new(Tee::Snp).expect("simulated SNP");
    let collateral = Collateral::Snp(sim.snp_certificates().expect("chain"));
    let opts = IdentityOptions {
        collateral: Some(EmbeddedCollateral::from_collateral(&collateral)),
        ..Default::default()
    };
    let identity = Arc::new(RaTlsIdentity::generate(&sim, &opts).expect("identity"));
    // Pin the simulator's launch measurement, as a real client pins a
    // published configuration (the set comparison is part of the cost).
    let measurement = match chrysalis_attestation::evidence::decode(identity.evidence())
        .expect("decode")
        .evidence
    {
        chrysalis_attestation::Evidence::Snp(r) => hex::encode(r.measurement),
        _ => unreachable!(),
    };
    let policy = Policy::from_toml(&format!(
        "allow_simulated = true\n[[snp.measurements]]\nname = \"bench\"\nmeasurement = \"{measurement}\"\n"
    ))
    .expect("policy");
    let spki = identity.spki_der().to_vec();
    let tls = Arc::new(chrysalis_ratls::server_config(&identity, None).expect("server config"));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    rt.spawn(async move {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
        while let Ok(Ok((tcp, _))) = tokio::time::timeout_at(deadline, listener.accept()).await {
            let (acceptor, sim, identity) = (acceptor.clone(), sim.clone(), identity.clone());
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (sim, identity) = (sim.clone(), identity.clone());
                        async move {
                            let q = req.uri().query().unwrap_or("").to_string();
                            let body = match chrysalis_ratls::parse_nonce_query(&q) {
                                Ok(nonce) => {
                                    chrysalis_ratls::fresh_evidence(&sim, &identity, &nonce)
                                        .and_then(|f| f.to_json())
                                        .unwrap_or_default()
                                }
                                Err(_) => "{}".into(),
                            };
                            let _ = req.into_body().collect().await;
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(body))))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, policy, spki)
}

/// The plain-TLS baseline: the certificate is not checked, but the
/// handshake signature is verified against the server's known key (what
/// any TLS client pays).
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>, Vec<u8>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 not used".into()))
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature_with_raw_key(
            message,
            &rustls::pki_types::SubjectPublicKeyInfoDer::from(self.1.as_slice()),
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn measure(
    name: &str,
    samples: usize,
    mut one: impl FnMut() -> Duration,
) -> (String, Duration, Duration) {
    for _ in 0..samples / 10 + 1 {
        one(); // warm-up
    }
    let mut times: Vec<Duration> = (0..samples).map(|_| one()).collect();
    times.sort();
    (
        name.to_owned(),
        percentile(&times, 0.5),
        percentile(&times, 0.99),
    )
}

fn main() {
    let samples: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200);
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (addr, policy, spki) = server(&server_rt);
    let url = format!("https://{addr}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let pin = || ImagePin::Policy {
        policy: Box::new(policy.clone()),
        source: "bench".into(),
    };

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut plain_cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider, spki)))
        .with_no_client_auth();
    plain_cfg.resumption = rustls::client::Resumption::disabled();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(plain_cfg));
    let plain = measure("plain TLS connect", samples, || {
        let t = Instant::now();
        rt.block_on(async {
            let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let _ = tcp.set_nodelay(true);
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
            connector.connect(name, tcp).await.expect("handshake")
        });
        t.elapsed()
    });
    let cold = measure("verify_node, cold", samples, || {
        let cfg = NodeConfig::new(pin());
        let t = Instant::now();
        rt.block_on(chrysalis_client::verify_node(&url, &cfg))
            .expect("verified");
        t.elapsed()
    });
    let shared = NodeConfig::new(pin());
    let cached = measure("verify_node, cached", samples, || {
        let t = Instant::now();
        rt.block_on(chrysalis_client::verify_node(&url, &shared))
            .expect("verified");
        t.elapsed()
    });
    println!("verify_node over loopback, simulated SNP evidence, {samples} connections each");
    println!(
        "{:<22} {:>12} {:>12} {:>14}",
        "", "median", "p99", "median ratio"
    );
    for (name, median, p99) in [&plain, &cold, &cached] {
        println!(
            "{name:<22} {:>10.3}ms {:>10.3}ms {:>13.1}x",
            median.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            median.as_secs_f64() / plain.1.as_secs_f64()
        );
    }
    println!(
        "added to a new connection (median): cold {:.3} ms, cached {:.3} ms",
        (cold.1.saturating_sub(plain.1)).as_secs_f64() * 1e3,
        (cached.1.saturating_sub(plain.1)).as_secs_f64() * 1e3
    );
}
