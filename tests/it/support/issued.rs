//! Issued-token fixtures shared by issued_tokens.rs (slapd) and the Active Directory
//! tests: key pairs made by the real `keygen`, daemons with a login listener, an HTTPS
//! client of the login endpoint, and tokens signed with a test key for what a login
//! cannot produce (an expired token, another issuer).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use pasetors::keys::AsymmetricSecretKey;
use pasetors::version4::{PublicToken, V4};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;

use super::*;

pub const GENERIC: &str = "Invalid username or password";
pub const EXPIRED: &str = "Credentials are expired";

/// A key pair written by `kube-ldap-webhook keygen --out DIR`.
pub struct KeyPair {
    /// Holds the key files; removed when the pair is dropped.
    _dir: tempfile::TempDir,
    pub key: PathBuf,
    pub public: PathBuf,
}

impl KeyPair {
    pub fn new() -> KeyPair {
        let dir = tempfile::tempdir().unwrap();
        run_checked(
            Command::new(bin())
                .args(["keygen", "--out"])
                .arg(dir.path().join("keys")),
            "kube-ldap-webhook keygen",
        );
        let keys = dir.path().join("keys");
        KeyPair {
            key: keys.join("signing.key"),
            public: keys.join("signing.pub"),
            _dir: dir,
        }
    }

    /// The key id keygen printed and tokens carry.
    pub fn kid(&self) -> String {
        let pem = std::fs::read_to_string(&self.public).unwrap();
        let pk = ed25519_compact::PublicKey::from_pem(&pem).unwrap();
        use sha2::Digest;
        let digest = sha2::Sha256::digest(pk.as_ref());
        let mut id =
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, digest);
        id.truncate(16);
        id
    }

    /// Signs arbitrary claims under `kid`, as only a holder of this private key can.
    pub fn sign(&self, kid: &str, claims: &Value) -> String {
        let pem = std::fs::read_to_string(&self.key).unwrap();
        let pair = ed25519_compact::KeyPair::from_pem(&pem).unwrap();
        let sk = AsymmetricSecretKey::<V4>::from(pair.sk.as_ref()).unwrap();
        let footer = serde_json::json!({ "kid": kid }).to_string();
        PublicToken::sign(
            &sk,
            claims.to_string().as_bytes(),
            Some(footer.as_bytes()),
            None,
        )
        .unwrap()
    }
}

pub fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .replace_nanosecond(0)
        .unwrap()
        .format(&Rfc3339)
        .unwrap()
}

/// The claims of a token a login gives `token` (read, not verified).
pub fn claims_of(token: &str) -> Value {
    let body = token
        .strip_prefix("v4.public.")
        .unwrap()
        .split('.')
        .next()
        .unwrap();
    let bytes =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, body).unwrap();
    // The last 64 bytes are the signature.
    serde_json::from_slice(&bytes[..bytes.len() - 64]).unwrap()
}

/// Config lines for a daemon with a login listener on `login_port` signing with `keys`,
/// plus `login` and `tokens` lines, as one TOML fragment after `[cache]` lines `cache`.
pub fn issuing_config(
    cache: &str,
    login_port: u16,
    keys: &KeyPair,
    login: &str,
    tokens: &str,
) -> String {
    format!(
        "{cache}\n[login]\nlisten = \"127.0.0.1:{login_port}\"\n{login}\n\
         [tokens]\nsigning_key_file = \"{}\"\n{tokens}\n",
        keys.key.display()
    )
}

/// A daemon with a login listener.
pub struct Issuer {
    pub daemon: Daemon,
    pub login_port: u16,
}

impl Issuer {
    /// The real daemon against `urls` with `[login]` on a free port and `[tokens]` signing
    /// with `keys`; `sections` as for [`DaemonBuilder::section`] (their `cache` lines go first).
    pub fn start(
        site: &Site,
        urls: &[String],
        sections: &[(&str, &str)],
        keys: &KeyPair,
        login: &str,
        tokens: &str,
    ) -> Issuer {
        let builder = urls
            .iter()
            .fold(Daemon::builder().site(site), |b, u| b.url(u.clone()));
        Issuer::start_with(builder, sections, keys, login, tokens)
    }

    /// [`Issuer::start`] on one slapd (the OpenLDAP site), waited for until its start-up
    /// probe of the directory answered: ready for reviews and logins.
    pub fn on_slapd(
        slapd: &Slapd,
        sections: &[(&str, &str)],
        keys: &KeyPair,
        login: &str,
        tokens: &str,
    ) -> Issuer {
        let i = Issuer::start(
            &Site::openldap(),
            &[slapd.url()],
            sections,
            keys,
            login,
            tokens,
        );
        i.daemon.wait_for_probe();
        i
    }

    /// [`Issuer::start`] on `builder` (its site, URLs, environment).
    pub fn start_with(
        builder: DaemonBuilder,
        sections: &[(&str, &str)],
        keys: &KeyPair,
        login: &str,
        tokens: &str,
    ) -> Issuer {
        let login_port = free_port();
        let cache: String = sections
            .iter()
            .filter(|(s, _)| *s == "cache")
            .map(|(_, v)| format!("{v}\n"))
            .collect();
        // `@LOGIN_PORT@` in `tokens` (a `[jwt]` issuer URL) is the login listener's port.
        let tokens = tokens.replace("@LOGIN_PORT@", &login_port.to_string());
        let toml = issuing_config(&cache, login_port, keys, login, &tokens);
        let mut all: Vec<(&str, &str)> = sections
            .iter()
            .copied()
            .filter(|(s, _)| *s != "cache")
            .collect();
        all.push(("cache", &toml));
        let daemon = builder.sections(&all).start();
        Issuer { daemon, login_port }
    }

    pub fn login_url(&self) -> String {
        format!("https://127.0.0.1:{}/login", self.login_port)
    }

    /// `POST /login` with Basic credentials, as the credential plugin sends it.
    pub async fn login(&self, user: &str, password: &str) -> Reply {
        let basic = format!("Basic {}", token(user, password));
        self.call("POST", &self.login_url(), Some(&basic)).await
    }

    /// [`Issuer::login`] from the local address `source`.
    pub async fn login_from(
        &self,
        source: std::net::Ipv4Addr,
        user: &str,
        password: &str,
    ) -> Reply {
        let basic = format!("Basic {}", token(user, password));
        let url = self.login_url();
        request_from(
            &self.daemon.pki,
            Some(source.into()),
            "POST",
            &url,
            Some(&basic),
            Vec::new(),
        )
        .await
    }

    /// A login that must succeed: the token.
    pub async fn token(&self, user: &str, password: &str) -> String {
        let r = self.login(user, password).await;
        assert_eq!(r.status, 200, "{}", r.raw);
        r.body["token"].as_str().unwrap().to_string()
    }

    /// `GET /login` with a Bearer token: the credential plugin's check of a cached token.
    pub async fn check(&self, token: &str) -> Reply {
        let bearer = format!("Bearer {token}");
        self.call("GET", &self.login_url(), Some(&bearer)).await
    }

    pub async fn call(&self, method: &str, url: &str, authorization: Option<&str>) -> Reply {
        request(&self.daemon.pki, method, url, authorization, Vec::new()).await
    }

    /// A TokenReview of `token` on the review port.
    pub async fn review(&self, token: &str) -> Answer {
        let d = &self.daemon;
        d.client().review(&d.url(), "v1", token).await
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Value,
    pub raw: String,
}

/// One HTTPS request without a client certificate.
pub async fn request(
    pki: &Pki,
    method: &str,
    url: &str,
    authorization: Option<&str>,
    body: Vec<u8>,
) -> Reply {
    request_from(pki, None, method, url, authorization, body).await
}

/// [`request`] from the local address `source` (any 127/8 address is this host): another
/// client as far as the login port's per-source limits are concerned.
pub async fn request_from(
    pki: &Pki,
    source: Option<std::net::IpAddr>,
    method: &str,
    url: &str,
    authorization: Option<&str>,
    body: Vec<u8>,
) -> Reply {
    try_request_from(pki, source, method, url, authorization, body)
        .await
        .expect("HTTPS request to the login port")
}

/// [`request_from`], or the client's error when the daemon closed the connection before
/// its reply was read (a request it refuses while the client is still writing).
pub async fn try_request_from(
    pki: &Pki,
    source: Option<std::net::IpAddr>,
    method: &str,
    url: &str,
    authorization: Option<&str>,
    body: Vec<u8>,
) -> Result<Reply, hyper_util::client::legacy::Error> {
    let mut tcp = hyper_util::client::legacy::connect::HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_local_address(source);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(client_tls(pki, None))
        .https_only()
        .enable_http1()
        .wrap_connector(tcp);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let mut b = hyper::Request::builder().method(method).uri(url);
    if let Some(a) = authorization {
        b = b.header("authorization", a);
    }
    let resp = client
        .request(b.body(Full::new(Bytes::from(body))).unwrap())
        .await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    Ok(Reply {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        raw: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

pub fn authenticated(a: &Answer) -> bool {
    a.body["status"]["authenticated"] == true
}

pub fn error_of(a: &Answer) -> String {
    a.body["status"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

pub fn groups_of(a: &Answer) -> Vec<String> {
    serde_json::from_value(a.body["status"]["user"]["groups"].clone()).unwrap_or_default()
}

/// Reviews `token` every 100 ms until `done` holds for the answer (a TTL running out).
pub async fn review_until(
    i: &Issuer,
    token: &str,
    mut done: impl FnMut(&Answer) -> bool,
) -> Answer {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let a = i.review(token).await;
        if done(&a) {
            return a;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the answer did not change within {PATIENCE:?}; last: {}",
            a.raw
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Rewrites the daemon's config file with `edit` and reloads it (SIGHUP), waiting for the
/// reload's log line.
pub fn reload(d: &Daemon, edit: impl FnOnce(String) -> String) {
    let before = d.log().matches("certificates and CAs reloaded").count();
    let text = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(&d.config, edit(text)).unwrap();
    d.signal(libc::SIGHUP);
    wait_until(
        || d.log().matches("certificates and CAs reloaded").count() > before,
        || format!("no reload:\n{}", d.log()),
    );
}

/// Claims as a login writes them, for tokens signed by the test itself.
pub fn claims(token_of_a_login: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let mut c = claims_of(token_of_a_login);
    edit(&mut c);
    c
}

pub fn ago(secs: u64) -> String {
    rfc3339(SystemTime::now() - Duration::from_secs(secs))
}

pub fn from_now(secs: u64) -> String {
    rfc3339(SystemTime::now() + Duration::from_secs(secs))
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}
