//! A keep-alive HTTPS client for the login port (no client certificate, an Authorization
//! header), as the credential plugin talks to it, and the ops listener's plain HTTP.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::common::BenchResult;
use crate::support::{client_tls, Pki};

#[derive(Clone)]
pub struct LoginClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl LoginClient {
    pub fn new(pki: &Pki) -> LoginClient {
        let mut tcp = HttpConnector::new();
        tcp.set_nodelay(true);
        tcp.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(client_tls(pki, None))
            .https_only()
            .enable_http1()
            .wrap_connector(tcp);
        LoginClient {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// `POST url` with `authorization`: the status and the body.
    pub async fn post(&self, url: &Uri, authorization: &str) -> BenchResult<(u16, Bytes)> {
        let req = hyper::Request::builder()
            .method("POST")
            .uri(url.clone())
            .header("authorization", authorization)
            .body(Full::new(Bytes::new()))?;
        let resp = self.client.request(req).await?;
        let status = resp.status().as_u16();
        Ok((status, resp.into_body().collect().await?.to_bytes()))
    }
}
