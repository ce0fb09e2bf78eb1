//! The rows of the cost table: what the daemon is asked, and its floor, one call each.

use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Uri;

use crate::client::LoginClient;
use crate::common::BenchResult;
use crate::floor::Direct;
use crate::support::issued::try_request_from;
use crate::support::{token, Daemon, Https};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Row {
    HitBasic,
    HitIssued,
    MissBasic,
    MissIssued,
    LoginPassword,
    LoginNegotiate,
    LoginPasswordSamba,
    TokenExchange,
    Lockout,
    Readyz,
}

impl Row {
    pub fn name(self) -> &'static str {
        match self {
            Row::HitBasic => "review, cache hit, basic token",
            Row::HitIssued => "review, cache hit, issued token",
            Row::MissBasic => "review, cache miss, basic token",
            Row::MissIssued => "review, issued token's re-check",
            Row::LoginPassword => "POST /login, password",
            Row::LoginNegotiate => "POST /login, Negotiate (Samba)",
            Row::LoginPasswordSamba => "POST /login, password (Samba)",
            Row::TokenExchange => "POST /token (JWT for a session)",
            Row::Lockout => "review refused by lockout",
            Row::Readyz => "GET /readyz",
        }
    }

    pub fn floor(self) -> &'static str {
        match self {
            Row::HitBasic | Row::HitIssued | Row::Lockout => "fixed-answer HTTPS server (hyper)",
            Row::MissBasic => "ldap3: search + bind + groups",
            Row::MissIssued | Row::TokenExchange => "ldap3: read DN + groups",
            Row::LoginPassword => "ldap3: the user's bind",
            Row::LoginNegotiate | Row::LoginPasswordSamba => "ldap3: the user's bind on Samba",
            Row::Readyz => "GET /healthz, same listener",
        }
    }
}

/// Users of each row: distinct ranges, so that a miss is a miss and a floor's user is not
/// one the daemon just read.
pub const HOT: usize = 100;
pub const ISSUED_HOT: usize = 100;
pub const MISS: usize = 1_000;
pub const RECHECK: usize = 1_500;
pub const LOGIN: usize = 2_000;
/// Each of those ranges holds the daemon's users, then the floor's (`SIDE` apart).
pub const SIDE: usize = 250;
pub const LOCKED: &str = "user2999";

/// What the rows talk to.
pub struct Env {
    pub d: Daemon,
    pub review: Https,
    pub review_uri: Uri,
    pub base_uri: Uri,
    pub login: LoginClient,
    pub login_uri: Uri,
    pub token_uri: Uri,
    pub direct: Direct,
    pub hit_bodies: Vec<Bytes>,
    pub issued_hits: Vec<Bytes>,
    /// Sessions of the `ISSUED_HOT` users, for POST /token.
    pub sessions: Vec<String>,
    /// Fresh issued tokens of users `RECHECK..`, each reviewed once by the row.
    pub fresh_issued: Vec<Bytes>,
    pub negotiate: Option<crate::Negotiate>,
}

fn accepted(b: &[u8]) -> bool {
    b.windows(20).any(|w| w == b"\"authenticated\":true")
}

async fn review(c: &Https, uri: &Uri, body: Bytes, want: bool) -> BenchResult<Duration> {
    let t0 = Instant::now();
    let (status, b) = c.send("POST", uri.clone(), body).await?;
    let took = t0.elapsed();
    if status != 200 || accepted(&b) != want {
        return Err(format!(
            "unexpected review answer {status}: {}",
            String::from_utf8_lossy(&b)
        )
        .into());
    }
    Ok(took)
}

async fn post(c: &LoginClient, uri: &Uri, authorization: &str) -> BenchResult<Duration> {
    let t0 = Instant::now();
    let (status, b) = c.post(uri, authorization).await?;
    let took = t0.elapsed();
    if status != 200 {
        return Err(format!("{uri}: {status} {}", String::from_utf8_lossy(&b)).into());
    }
    Ok(took)
}

fn ops(d: &Daemon, path: &str) -> BenchResult<Duration> {
    let t0 = Instant::now();
    let (status, body) = d.try_ops(path)?;
    let took = t0.elapsed();
    if status != 200 {
        return Err(format!("{path}: {status} {body}").into());
    }
    Ok(took)
}

pub fn wrong(k: usize) -> Bytes {
    Bytes::from(crate::support::review_body(
        "v1",
        &token(LOCKED, &format!("wrong-{k}")),
    ))
}

impl Env {
    /// The daemon's side of `row`, its `k`th call.
    pub async fn daemon(&mut self, row: Row, k: usize) -> BenchResult<Duration> {
        let user = |base: usize| format!("user{}", base + k);
        match row {
            Row::HitBasic => {
                review(
                    &self.review,
                    &self.review_uri,
                    self.hit_bodies[k % HOT].clone(),
                    true,
                )
                .await
            }
            Row::HitIssued => {
                review(
                    &self.review,
                    &self.review_uri,
                    self.issued_hits[k % ISSUED_HOT].clone(),
                    true,
                )
                .await
            }
            Row::MissBasic => {
                review(
                    &self.review,
                    &self.review_uri,
                    crate::user_body(&user(MISS)),
                    true,
                )
                .await
            }
            Row::MissIssued => {
                let Some(body) = self.fresh_issued.get(k).cloned() else {
                    return Err("more samples than fresh issued tokens".into());
                };
                review(&self.review, &self.review_uri, body, true).await
            }
            Row::LoginPassword => {
                let basic = format!("Basic {}", token(&user(LOGIN), crate::PASSWORD));
                post(&self.login, &self.login_uri, &basic).await
            }
            Row::LoginNegotiate | Row::LoginPasswordSamba => {
                let Some(n) = self.negotiate.as_ref() else {
                    return Err("no Samba DC".into());
                };
                let auth = if row == Row::LoginNegotiate {
                    let credential = n
                        .ticket
                        .negotiate(&n.spn, crate::support::kerberos::Mech::Spnego);
                    format!("Negotiate {credential}")
                } else {
                    format!("Basic {}", token(&n.user, &n.password))
                };
                // A new connection for each, as the credential plugin makes it.
                let url = n.login_uri.to_string();
                let t0 = Instant::now();
                let r = try_request_from(
                    &n.issuer.daemon.pki,
                    None,
                    "POST",
                    &url,
                    Some(&auth),
                    Vec::new(),
                )
                .await?;
                let took = t0.elapsed();
                if r.status != 200 {
                    return Err(format!("login on Samba: {} {}", r.status, r.raw).into());
                }
                Ok(took)
            }
            Row::TokenExchange => {
                let bearer = format!("Bearer {}", self.sessions[k % ISSUED_HOT]);
                post(&self.login, &self.token_uri, &bearer).await
            }
            Row::Lockout => review(&self.review, &self.review_uri, wrong(k + 100), false).await,
            Row::Readyz => ops(&self.d, "/readyz"),
        }
    }

    /// The floor of `row`, its `k`th call.
    pub async fn floor(&mut self, row: Row, k: usize) -> BenchResult<Duration> {
        let user = |base: usize| format!("user{}", base + SIDE + k);
        match row {
            Row::HitBasic | Row::HitIssued | Row::Lockout => {
                review(
                    &self.review,
                    &self.base_uri,
                    self.hit_bodies[k % HOT].clone(),
                    true,
                )
                .await
            }
            Row::MissBasic => self.direct.miss(&user(MISS)).await,
            Row::MissIssued | Row::TokenExchange => self.direct.recheck(&user(RECHECK)).await,
            Row::LoginPassword => self.direct.bind(&user(LOGIN)).await,
            Row::LoginNegotiate | Row::LoginPasswordSamba => {
                let Some(n) = self.negotiate.as_mut() else {
                    return Err("no Samba DC".into());
                };
                let t0 = Instant::now();
                n.ldap
                    .simple_bind(&n.bind_dn, &n.password)
                    .await?
                    .success()?;
                Ok(t0.elapsed())
            }
            Row::Readyz => ops(&self.d, "/healthz"),
        }
    }

    /// The processes whose CPU the daemon's side of `row` costs, and its floor's.
    pub fn pids(&self, row: Row, slapd: u32, base: u32) -> (Vec<u32>, Vec<u32>) {
        let daemon = self.d.pid();
        match row {
            Row::HitBasic | Row::HitIssued | Row::Lockout => (vec![daemon], vec![base]),
            Row::Readyz => (vec![daemon], vec![daemon]),
            Row::LoginNegotiate | Row::LoginPasswordSamba => (
                self.negotiate
                    .as_ref()
                    .map(|n| vec![n.pid])
                    .unwrap_or_default(),
                vec![],
            ),
            _ => (vec![daemon, slapd], vec![slapd]),
        }
    }
}
