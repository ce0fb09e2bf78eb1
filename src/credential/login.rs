//! The daemon's login endpoint, from the plugin's side: `POST /login` with HTTP Basic
//! credentials for a token, `GET /login` with a token to ask whether the daemon still
//! accepts it, `POST /token` (beside `/login`) to exchange it for a JWT. HTTPS only, verified against `--ca-file`/`--ca-data` or the system's roots,
//! on the binary's one crypto provider (ring).

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, RETRY_AFTER, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use serde::Deserialize;
use time::OffsetDateTime;
use url::Url;
use zeroize::Zeroizing;

use super::expiry::Notice;
use crate::outcome::UNAVAILABLE;
use crate::secret::Password;
use crate::tls::TlsError;

/// A login waits for the directory (the daemon's LDAP timeouts are seconds each).
const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);
/// The check before a cached token is used: short, since a daemon that does not answer
/// leaves the decision to kube-apiserver anyway.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// Any answer of the login endpoint fits easily; more is not the daemon talking.
const MAX_BODY: usize = 64 * 1024;
/// A session token is a few hundred bytes; a JWT grows with its groups.
const MAX_TOKEN: usize = 48 * 1024;
/// Server-supplied text shown to the user is cut here.
const MAX_MESSAGE: usize = 300;

/// Why no token came from the login endpoint.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("the login URL must be an https:// URL with a host{0}")]
    /// `--login-url` is not an acceptable URL.
    Url(String),
    #[error("--ca-data is not base64 of PEM certificates")]
    /// `--ca-data` holds no usable certificate.
    CaData,
    #[error("the login endpoint's CA: {0}")]
    /// `--ca-file` or the TLS setup failed.
    Tls(#[from] TlsError),
    #[error("cannot start the HTTPS client: {0}")]
    /// The async runtime could not be built.
    Runtime(#[source] std::io::Error),
    #[error("cannot reach the login endpoint {url}: {cause}")]
    /// No HTTP answer (connection refused, TLS failure, timeout ...).
    Unreachable {
        /// The login URL.
        url: String,
        /// What failed.
        cause: String,
    },
    #[error("login refused: {0}")]
    /// 401: the daemon's reason, e.g. `Invalid username or password`.
    Refused(String),
    #[error("too many logins from this address: try again {0}")]
    /// 429, with what `Retry-After` said.
    RateLimited(String),
    #[error("the login endpoint cannot log anyone in right now: {0}")]
    /// 401 with the review's backend text (503 from daemons before the contract fixed
    /// 401): the directory is unavailable.
    Unavailable(String),
    #[error("the login endpoint answered HTTP {status}{message}")]
    /// Any other status.
    Status {
        /// The HTTP status code.
        status: u16,
        /// `: reason` when the body said one.
        message: String,
    },
    #[error("the login endpoint's answer is not a token: {0}")]
    /// A 200 whose body is not `{"token", "expirationTimestamp"}`.
    Answer(&'static str),
}

/// The login URL: `https://` with a host, no credentials, query or fragment. A bare
/// `https://host:port` or `https://host:port/` means the daemon's `/login`.
pub(crate) fn login_url(raw: &str) -> Result<Url, LoginError> {
    let url = Url::parse(raw).map_err(|e| LoginError::Url(format!(", got `{raw}` ({e})")))?;
    // Never echo a URL that carries credentials.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(LoginError::Url(
            " and no user name or password in it".into(),
        ));
    }
    if url.scheme() != "https" {
        return Err(LoginError::Url(format!(
            ", got `{raw}`: the password must not cross the network in clear text"
        )));
    }
    if url.host_str().is_none_or(str::is_empty) || url.query().is_some() || url.fragment().is_some()
    {
        return Err(LoginError::Url(format!(
            " and no query or fragment, got `{raw}`"
        )));
    }
    let mut url = url;
    if url.path().is_empty() || url.path() == "/" {
        url.set_path("/login");
    }
    Ok(url)
}

/// A token as the daemon issues it and kubectl sends it: printable ASCII, no white space.
pub(crate) fn plausible_token(token: &str) -> bool {
    !token.is_empty() && token.len() <= MAX_TOKEN && token.bytes().all(|b| b.is_ascii_graphic())
}

/// Which certificates the login endpoint's must chain to.
pub(crate) enum Trust<'a> {
    /// The system's roots.
    System,
    /// `--ca-file`.
    File(&'a Path),
    /// `--ca-data`: base64 of PEM, as a kubeconfig's `certificate-authority-data`.
    Data(&'a str),
}

fn roots(trust: Trust<'_>) -> Result<RootCertStore, LoginError> {
    match trust {
        Trust::File(path) => Ok(crate::tls::load_roots(path)?),
        Trust::Data(b64) => {
            let pem = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| LoginError::CaData)?;
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                roots
                    .add(cert.map_err(|_| LoginError::CaData)?)
                    .map_err(|_| LoginError::CaData)?;
            }
            if roots.is_empty() {
                return Err(LoginError::CaData);
            }
            Ok(roots)
        }
        Trust::System => {
            let mut roots = RootCertStore::empty();
            // A broken system certificate must not stop a login.
            let _ = roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            Ok(roots)
        }
    }
}

/// What the daemon answered about a cached token.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Check {
    /// It would accept it in a review now.
    Accepted,
    /// It would not (expired, password changed, account disabled, key rotated ...).
    Refused(String),
    /// No verdict: unreachable, rate limited, overloaded.
    Unsettled(String),
}

/// A token from `POST /login`.
pub(crate) struct Issued {
    pub(crate) token: Zeroizing<String>,
    pub(crate) expires: OffsetDateTime,
    /// `expires` in RFC 3339, UTC, whole seconds (rounded down): what client-go reads.
    pub(crate) expiration_timestamp: String,
    /// What a login answer said about the password's expiry.
    pub(crate) password: Option<Notice>,
}

/// The login endpoint and the client that talks to it.
pub(crate) struct Endpoint {
    url: Url,
    /// `token` beside the login path: `/token`, or `/prefix/token` behind a proxy.
    token_url: Url,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    rt: tokio::runtime::Runtime,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Endpoint {
    pub(crate) fn new(url: Url, trust: Trust<'_>) -> Result<Endpoint, LoginError> {
        let config = ClientConfig::builder_with_provider(crate::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(TlsError::from)?
            .with_root_certificates(roots(trust)?)
            .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .enable_http1()
            .build();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(LoginError::Runtime)?;
        let client = Client::builder(TokioExecutor::new()).build(https);
        let token_url = url
            .join("token")
            .map_err(|e| LoginError::Url(format!(" from which `token` makes a URL ({e})")))?;
        Ok(Endpoint {
            url,
            token_url,
            client,
            rt,
        })
    }

    pub(crate) fn url(&self) -> &str {
        self.url.as_str()
    }

    /// The host of the login URL: the Kerberos service is `HTTP@` it.
    pub(crate) fn host(&self) -> &str {
        self.url.host_str().unwrap_or_default()
    }

    fn request(
        &self,
        method: Method,
        url: &Url,
        authorization: &str,
    ) -> Option<Request<Full<Bytes>>> {
        let mut auth = HeaderValue::from_str(authorization).ok()?;
        auth.set_sensitive(true);
        Request::builder()
            .method(method)
            .uri(url.as_str())
            .header(AUTHORIZATION, auth)
            .header(ACCEPT, "application/json")
            .header(
                USER_AGENT,
                concat!("kube-ldap-webhook/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::new()))
            .ok()
    }

    fn send(&self, req: Request<Full<Bytes>>, limit: Duration) -> Result<Answer, String> {
        self.rt.block_on(async {
            let exchange = async {
                let resp = self.client.request(req).await.map_err(|e| chain(&e))?;
                let (parts, body) = resp.into_parts();
                let body = Limited::new(body, MAX_BODY)
                    .collect()
                    .await
                    .map_err(|e| format!("reading the answer: {e}"))?
                    .to_bytes();
                Ok(Answer {
                    status: parts.status,
                    headers: parts.headers,
                    body,
                })
            };
            tokio::time::timeout(limit, exchange)
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {}s", limit.as_secs())))
        })
    }

    /// `POST /login` with `username:password` as HTTP Basic credentials.
    pub(crate) fn login(&self, username: &str, password: &Password) -> Result<Issued, LoginError> {
        let mut plain = Zeroizing::new(String::with_capacity(
            username.len() + password.expose().len() + 1,
        ));
        plain.push_str(username);
        plain.push(':');
        plain.push_str(password.expose());
        let basic = Zeroizing::new(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(plain.as_bytes())
        ));
        self.post(&self.url, &basic).map(|(issued, _)| issued)
    }

    /// `POST /login` with these credentials: the token, and the answer's headers (where a
    /// Negotiate login's mutual-authentication token is).
    pub(crate) fn log_in_with(
        &self,
        authorization: &str,
    ) -> Result<(Issued, HeaderMap), LoginError> {
        self.post(&self.url, authorization)
    }

    /// `POST /token` with the session as a bearer token: a JWT for kube-apiserver, after
    /// the daemon re-checked the account. A refused session is `LoginError::Refused`.
    pub(crate) fn exchange(&self, session: &str) -> Result<Issued, LoginError> {
        let bearer = Zeroizing::new(format!("Bearer {session}"));
        self.post(&self.token_url, &bearer)
            .map(|(issued, _)| issued)
    }

    /// A POST whose 200 carries `{"token", "expirationTimestamp"}`, with the answer's headers.
    fn post(&self, url: &Url, authorization: &str) -> Result<(Issued, HeaderMap), LoginError> {
        let req = self
            .request(Method::POST, url, authorization)
            .ok_or(LoginError::Url(" that makes an HTTP request".into()))?;
        let a = self
            .send(req, LOGIN_TIMEOUT)
            .map_err(|cause| LoginError::Unreachable {
                url: url.to_string(),
                cause,
            })?;
        match a.status {
            StatusCode::OK => Ok((issued(&a.body)?, a.headers)),
            StatusCode::UNAUTHORIZED => match message(&a.body) {
                Some(m) if m == UNAVAILABLE => Err(LoginError::Unavailable(m)),
                m => {
                    Err(LoginError::Refused(m.unwrap_or_else(|| {
                        "the login endpoint gave no reason".into()
                    })))
                }
            },
            StatusCode::TOO_MANY_REQUESTS => Err(LoginError::RateLimited(retry_after(&a.headers))),
            StatusCode::SERVICE_UNAVAILABLE => Err(LoginError::Unavailable(
                message(&a.body).unwrap_or_else(|| "HTTP 503".into()),
            )),
            s => Err(LoginError::Status {
                status: s.as_u16(),
                message: message(&a.body)
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default(),
            }),
        }
    }

    /// `GET /login` with the token as a bearer token: would the daemon accept it now?
    pub(crate) fn check(&self, token: &str) -> Check {
        let bearer = Zeroizing::new(format!("Bearer {token}"));
        let Some(req) = self.request(Method::GET, &self.url, &bearer) else {
            return Check::Refused("the cached token is not a token".into());
        };
        match self.send(req, CHECK_TIMEOUT) {
            Ok(a) if a.status.is_success() => Check::Accepted,
            Ok(a) if a.status == StatusCode::UNAUTHORIZED => {
                Check::Refused(message(&a.body).unwrap_or_else(|| "HTTP 401".into()))
            }
            Ok(a) => Check::Unsettled(format!("HTTP {}", a.status.as_u16())),
            Err(cause) => Check::Unsettled(cause),
        }
    }
}

/// An error with its causes, which is where hyper says what actually failed.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

fn issued(body: &[u8]) -> Result<Issued, LoginError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Body {
        token: Zeroizing<String>,
        expiration_timestamp: String,
        #[serde(default)]
        password_expiry: Option<serde_json::Value>,
    }
    let b: Body = serde_json::from_slice(body)
        .map_err(|_| LoginError::Answer("not JSON with token and expirationTimestamp"))?;
    if !plausible_token(&b.token) {
        return Err(LoginError::Answer(
            "the token is empty, too long or not printable",
        ));
    }
    let expires = OffsetDateTime::parse(
        &b.expiration_timestamp,
        &time::format_description::well_known::Rfc3339,
    )
    .map_err(|_| LoginError::Answer("expirationTimestamp is not an RFC 3339 time"))?;
    let expires = expires
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .map_err(|_| LoginError::Answer("expirationTimestamp is out of range"))?;
    let expiration_timestamp = expires
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|_| LoginError::Answer("expirationTimestamp is out of range"))?;
    Ok(Issued {
        token: b.token,
        expires,
        expiration_timestamp,
        password: Notice::from_answer(b.password_expiry),
    })
}

/// Text the server sent, made safe for a terminal: no control characters (escape
/// sequences), bounded length.
fn printable(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_MESSAGE)
        .collect()
}

/// The `message` of a `Status`-shaped body.
fn message(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Status {
        message: Option<String>,
    }
    let m = printable(&serde_json::from_slice::<Status>(body).ok()?.message?);
    (!m.trim().is_empty()).then_some(m)
}

fn retry_after(headers: &HeaderMap) -> String {
    let value = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .unwrap_or("");
    match value.parse::<u64>() {
        Ok(1) => "in 1 second".into(),
        Ok(n) => format!("in {n} seconds"),
        Err(_) if !value.is_empty() => format!("after {}", printable(value)),
        Err(_) => "later".into(),
    }
}

#[cfg(test)]
mod tests;
