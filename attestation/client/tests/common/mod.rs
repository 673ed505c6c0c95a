//! A simulated node for the client's tests: an RA-TLS server on 127.0.0.1
//! (for at most 60 s) answering `?nonce=` with fresh evidence, which
//! `fill` may complete (GPU evidence, the RTMR3 log) before it is sent.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use chrysalis_ratls::{FreshEvidence, RaTlsIdentity};
use chrysalis_sim::SimProvider;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;

/// Serves `identity` (whose evidence `sim` signs); returns the address
/// and the runtime serving it (the server stops when it is dropped).
pub fn serve<F>(
    sim: SimProvider,
    identity: Arc<RaTlsIdentity>,
    fill: F,
) -> (SocketAddr, tokio::runtime::Runtime)
where
    F: Fn(&mut FreshEvidence) + Send + Sync + 'static,
{
    let tls = Arc::new(chrysalis_ratls::server_config(&identity, None).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let fill = Arc::new(fill);
    rt.spawn(async move {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        while let Ok(Ok((tcp, _))) = tokio::time::timeout_at(deadline, listener.accept()).await {
            let (acceptor, sim, identity, fill) = (
                acceptor.clone(),
                sim.clone(),
                identity.clone(),
                fill.clone(),
            );
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (sim, identity, fill) = (sim.clone(), identity.clone(), fill.clone());
                        async move {
                            let q = req.uri().query().unwrap_or("").to_string();
                            let body = match chrysalis_ratls::parse_nonce_query(&q) {
                                Ok(nonce) => {
                                    let mut f =
                                        chrysalis_ratls::fresh_evidence(&sim, &identity, &nonce)
                                            .unwrap();
                                    fill(&mut f);
                                    f.to_json().unwrap()
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
    (addr, rt)
}
