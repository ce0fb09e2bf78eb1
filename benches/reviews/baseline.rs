//! The baseline server: the daemon's stack and TLS config, no logic. It is this bench binary
//! run again with `KLW_BENCH_ROLE=baseline`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, Uri};
use hyper_util::rt::TokioIo;

use crate::support::{self, Listening, Pki, Process};

const ROLE_ENV: &str = "KLW_BENCH_ROLE";

pub struct Baseline {
    proc: Process,
    port: u16,
    /// What it answers: the daemon's answer to the last hit token.
    pub reply: Vec<u8>,
}

impl Baseline {
    /// Runs the baseline server with `pki`'s server certificate and client CA, answering
    /// every request with `reply`.
    pub fn start(pki: &Pki, reply: &[u8]) -> Baseline {
        let port = support::free_port();
        let reply_file = pki.dir.join("baseline-reply.json");
        std::fs::write(&reply_file, reply).unwrap();
        let mut proc = Process::spawn(
            Command::new(std::env::current_exe().unwrap())
                .env(ROLE_ENV, "baseline")
                .env("KLW_BASELINE_PORT", port.to_string())
                .env("KLW_BASELINE_CERT", &pki.server_cert)
                .env("KLW_BASELINE_KEY", &pki.server_key)
                .env("KLW_BASELINE_CLIENT_CA", &pki.client_ca)
                .env("KLW_BASELINE_REPLY", &reply_file)
                .stdin(Stdio::null())
                .stdout(Stdio::null()),
            "the baseline server",
        );
        match proc.wait_for_ports(&[port]) {
            Listening::Yes => Baseline {
                proc,
                port,
                reply: reply.to_vec(),
            },
            Listening::Exited(status) => panic!("the baseline server exited with {status}"),
            Listening::NotWithinPatience => panic!("the baseline server did not listen"),
        }
    }

    pub fn url(&self) -> Uri {
        format!("https://127.0.0.1:{}/authenticate?timeout=30s", self.port)
            .parse()
            .unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }
}

/// Whether this process is the baseline server.
pub fn is_baseline() -> bool {
    std::env::var(ROLE_ENV).as_deref() == Ok("baseline")
}

/// The baseline server's `main`: the accept loop and connection setup of
/// `server::run_reviews` (handshake in a spawned task under a timeout, TCP_NODELAY,
/// hyper-util auto with the same HTTP/1.1 and HTTP/2 settings) and the daemon's own
/// `tls::server_config`. Each request's body is read (as the daemon reads it) and answered
/// with a fixed TokenReview: the daemon's answer to the same request.
pub fn main() {
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k}"));
    let port: u16 = env("KLW_BASELINE_PORT").parse().unwrap();
    let tls = kube_ldap_webhook::server_config(
        Path::new(&env("KLW_BASELINE_CERT")),
        Path::new(&env("KLW_BASELINE_KEY")),
        Path::new(&env("KLW_BASELINE_CLIENT_CA")),
    )
    .expect("baseline TLS config");
    let reply = Bytes::from(std::fs::read(env("KLW_BASELINE_REPLY")).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .unwrap();
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let _ = tcp.set_nodelay(true);
            tokio::spawn(serve(acceptor.clone(), tcp, reply.clone()));
        }
    });
}

/// One connection: the handshake, then every request answered with `reply`.
async fn serve(acceptor: tokio_rustls::TlsAcceptor, tcp: tokio::net::TcpStream, reply: Bytes) {
    let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
    else {
        return;
    };
    let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let reply = reply.clone();
        async move {
            let _ = Limited::new(req.into_body(), 64 * 1024).collect().await;
            let mut r = Response::new(Full::new(reply));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Ok::<_, Infallible>(r)
        }
    });
    let builder = kube_ldap_webhook::connection_builder();
    let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
}
