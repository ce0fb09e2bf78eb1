//! The client side of the review listener: kube-apiserver's HTTPS client with a client
//! certificate (hyper-rustls), the TokenReview it sends, and raw TLS for requests written
//! by hand.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::{Pki, PATIENCE};

/// A rustls client config that trusts `pki`'s server CA, with `identity` (certificate and
/// key files) as the client certificate.
pub fn client_tls(pki: &Pki, identity: Option<(&Path, &Path)>) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&pki.server_ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    match identity {
        Some((cert, key)) => {
            let certs = CertificateDer::pem_file_iter(cert)
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_file(key).unwrap();
            b.with_client_auth_cert(certs, key).unwrap()
        }
        None => b.with_no_client_auth(),
    }
}

/// A TLS handshake over `tcp` with `pki`'s server, offering the ALPN protocols `alpn`.
pub async fn tls_connect(
    pki: &Pki,
    tcp: TcpStream,
    identity: Option<(&Path, &Path)>,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut cfg = client_tls(pki, identity);
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
}

/// A TokenReview of `version` ("v1" or "v1beta1") for `token`, byte for byte as
/// kube-apiserver sends it.
pub fn review_body(version: &str, token: &str) -> Vec<u8> {
    let body = serde_json::json!({
        "apiVersion": format!("authentication.k8s.io/{version}"),
        "kind": "TokenReview",
        "metadata": {"creationTimestamp": null},
        "spec": {"token": token, "audiences": ["https://kubernetes.default.svc"]},
        "status": {"user": {}},
    });
    let mut bytes = serde_json::to_vec(&body).unwrap();
    bytes.push(b'\n');
    bytes
}

/// An HTTPS client (hyper-util's legacy client over hyper-rustls, TCP_NODELAY): with
/// `http2` every request shares one connection; without it each request in flight holds one
/// keep-alive connection.
#[derive(Clone)]
pub struct Https {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub raw: String,
}

impl Https {
    pub fn new(pki: &Pki, identity: Option<(&Path, &Path)>, http2: bool) -> Https {
        let mut tcp = HttpConnector::new();
        tcp.set_nodelay(true);
        tcp.enforce_http(false);
        let b = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(client_tls(pki, identity))
            .https_only();
        let connector = if http2 {
            b.enable_http2().wrap_connector(tcp)
        } else {
            b.enable_http1().wrap_connector(tcp)
        };
        let mut cb = Client::builder(TokioExecutor::new());
        cb.pool_idle_timeout(Duration::from_secs(600));
        if http2 {
            cb.http2_only(true);
        }
        Https {
            client: cb.build(connector),
        }
    }

    /// One request with a JSON body: the status and the body as it came (what a load
    /// generator needs, nothing parsed).
    pub async fn send(&self, method: &str, uri: Uri, body: Bytes) -> Result<(u16, Bytes), String> {
        let req = hyper::Request::builder()
            .method(method)
            .uri(uri)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, bytes))
    }

    pub async fn request(&self, method: &str, url: &str, body: Vec<u8>) -> Result<Answer, String> {
        let uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let (status, bytes) = self.send(method, uri, Bytes::from(body)).await?;
        Ok(Answer {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            raw: String::from_utf8_lossy(&bytes).to_string(),
        })
    }

    /// POSTs a TokenReview of `version` ("v1" or "v1beta1") for `token`, with
    /// kube-apiserver's default `?timeout=30s`.
    pub async fn review(&self, url: &str, version: &str, token: &str) -> Answer {
        self.review_with_timeout(url, version, token, "30s").await
    }

    /// [`Https::review`] with another `?timeout=` (a Go duration).
    pub async fn review_with_timeout(
        &self,
        url: &str,
        version: &str,
        token: &str,
        timeout: &str,
    ) -> Answer {
        self.request(
            "POST",
            &format!("{url}?timeout={timeout}"),
            review_body(version, token),
        )
        .await
        .expect("HTTPS request")
    }
}

/// One v1 TokenReview written by hand over an HTTP/1.1 connection `s`: the answer's JSON
/// body, whatever its status; None if the connection ended first or nothing came within
/// [`PATIENCE`].
pub async fn http1_review<S>(s: &mut S, token: &str) -> Option<Value>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let body = String::from_utf8(review_body("v1", token)).unwrap();
    let req = format!(
        "POST /authenticate?timeout=30s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(PATIENCE, s.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))?
            .trim()
            .parse()
            .ok()?;
        if buf.len() >= i + 4 + len {
            return serde_json::from_slice(&buf[i + 4..i + 4 + len]).ok();
        }
    }
}
