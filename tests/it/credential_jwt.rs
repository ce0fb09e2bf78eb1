//! `kube-ldap-webhook credential --login-url URL --jwt` against the real daemon's issuer
//! (`[jwt]`, `POST /token`) and a real slapd: the JWT exchanged for the session, cached
//! beside it, reused until it is due, exchanged again without a login, a refused session
//! costing one login, and what the user reads when the daemon cannot be reached.

use std::path::PathBuf;

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::credential_login::{mode, stderr, Credential, Fixture, Laptop, ISSUED};
use crate::support::*;

/// A daemon whose login listener also issues JWTs (ES256 key from `keygen`).
struct Site {
    fixture: Fixture,
    _keys: tempfile::TempDir,
}

/// A `[jwt]` table for [`Issuer::start`]'s `tokens` (an issuer on the login port, JWTs
/// of 5 minutes) and the directory holding its ES256 key from `keygen`.
pub(crate) fn jwt_table() -> (tempfile::TempDir, String) {
    let keys = tempfile::tempdir().unwrap();
    let dir = keys.path().join("jwt");
    run_checked(
        std::process::Command::new(bin())
            .args(["keygen", "--algorithm", "es256", "--out"])
            .arg(&dir),
        "keygen --algorithm es256",
    );
    let jwt = format!(
        "\n[jwt]\nissuer = \"https://127.0.0.1:@LOGIN_PORT@\"\naudiences = [\"it\"]\n\
         token_ttl = \"5m\"\nsigning_key_file = \"{}\"\n",
        dir.join("signing.key").display()
    );
    (keys, jwt)
}

impl Site {
    fn start() -> Site {
        let (keys, jwt) = jwt_table();
        Site {
            fixture: Fixture::with("rate = 6000\nburst = 1000", &jwt),
            _keys: keys,
        }
    }
}

impl Laptop {
    /// alice's run in the JWT mode.
    fn jwt(&self, site: &Site) -> std::process::Output {
        self.plugin(&site.fixture, &["--jwt"])
            .args(self.alice())
            .output()
            .unwrap()
    }

    fn jwt_file(&self) -> PathBuf {
        let files: Vec<PathBuf> = self
            .token_files()
            .into_iter()
            .filter(|p| p.to_string_lossy().ends_with(".jwt.json"))
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        files.into_iter().next().unwrap()
    }

    fn session_file(&self) -> PathBuf {
        let files: Vec<PathBuf> = self
            .token_files()
            .into_iter()
            .filter(|p| !p.to_string_lossy().ends_with(".jwt.json"))
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        files.into_iter().next().unwrap()
    }
}

fn edit(path: &PathBuf, change: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    change(&mut v);
    std::fs::write(path, v.to_string()).unwrap();
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0).unwrap().format(&Rfc3339).unwrap()
}

/// A JWT whose lifetime (5 minutes here) is almost over: due to be replaced.
fn make_due(laptop: &Laptop) {
    let now = OffsetDateTime::now_utc();
    edit(&laptop.jwt_file(), |v| {
        v["obtained"] = rfc3339(now - time::Duration::minutes(5)).into();
        v["expirationTimestamp"] = rfc3339(now + time::Duration::seconds(5)).into();
    });
}

fn header_and_claims(jwt: &str) -> (Value, Value) {
    use base64::Engine;
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "{jwt}");
    let decode = |p: &str| -> Value {
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .unwrap();
        serde_json::from_slice(&b).unwrap()
    };
    (decode(parts[0]), decode(parts[1]))
}

#[test]
fn the_jwt_mode_prints_an_es256_jwt_for_alice_and_keeps_it_beside_the_session() {
    let site = Site::start();
    let laptop = Laptop::new();
    let c = Credential::of(&laptop.jwt(&site));
    let (header, claims) = header_and_claims(c.token());
    assert_eq!(header["alg"], "ES256");
    assert_eq!(claims["username"], "alice");
    assert!(
        claims["aud"] == "it" || claims["aud"] == serde_json::json!(["it"]),
        "{claims}"
    );
    let exp = OffsetDateTime::from_unix_timestamp(claims["exp"].as_i64().unwrap()).unwrap();
    assert_eq!(c.expiry(), rfc3339(exp));
    assert_eq!(site.fixture.metric(ISSUED), 1.0, "one login");
    let (jwt, session) = (laptop.jwt_file(), laptop.session_file());
    assert_eq!(jwt.parent(), session.parent());
    assert_eq!(mode(&jwt), 0o600);
    assert_eq!(mode(&session), 0o600);
    let cached: Value = serde_json::from_slice(&std::fs::read(&jwt).unwrap()).unwrap();
    assert_eq!(cached["token"], c.token());
}

#[test]
fn a_second_run_prints_the_cached_jwt_even_with_the_daemon_gone() {
    let mut site = Site::start();
    let laptop = Laptop::new();
    let first = Credential::of(&laptop.jwt(&site));
    site.fixture.issuer.daemon.terminate();
    let second = Credential::of(&laptop.jwt(&site));
    assert_eq!(second.token(), first.token());
    assert_eq!(second.expiry(), first.expiry());
    assert!(second.stderr.is_empty(), "{}", second.stderr);
}

#[test]
fn a_due_jwt_is_exchanged_again_for_the_cached_session_without_a_login() {
    let site = Site::start();
    let laptop = Laptop::new();
    let first = Credential::of(&laptop.jwt(&site));
    make_due(&laptop);
    let out = laptop
        .plugin(&site.fixture, &["--jwt", "--username", "alice"])
        .output()
        .unwrap();
    let second = Credential::of(&out);
    assert_ne!(second.token(), first.token());
    assert_eq!(header_and_claims(second.token()).1["username"], "alice");
    assert_eq!(site.fixture.metric(ISSUED), 1.0, "no second login");
    assert!(second.stderr.is_empty(), "{}", second.stderr);
}

#[test]
fn a_session_the_issuer_refuses_is_forgotten_and_costs_one_login() {
    let site = Site::start();
    let laptop = Laptop::new();
    let first = Credential::of(&laptop.jwt(&site));
    std::fs::remove_file(laptop.jwt_file()).unwrap();
    edit(&laptop.session_file(), |v| {
        v["token"] = "v4.public.bm90LWEtdG9rZW4".into();
    });
    let second = Credential::of(&laptop.jwt(&site));
    assert!(
        second
            .stderr
            .contains("the cached session is no longer accepted"),
        "{}",
        second.stderr
    );
    assert_ne!(second.token(), first.token());
    assert_eq!(site.fixture.metric(ISSUED), 2.0, "one more login");
}

#[test]
fn with_the_daemon_gone_a_due_jwt_is_printed_with_a_warning_that_it_cannot_be_refreshed() {
    let mut site = Site::start();
    let laptop = Laptop::new();
    let first = Credential::of(&laptop.jwt(&site));
    site.fixture.issuer.daemon.terminate();
    make_due(&laptop);
    let c = Credential::of(&laptop.jwt(&site));
    assert_eq!(c.token(), first.token());
    assert!(
        c.stderr.contains("cannot refresh the token"),
        "{}",
        c.stderr
    );
    assert!(c.stderr.contains("cannot reach"), "{}", c.stderr);
}

#[test]
fn with_the_daemon_gone_an_expired_jwt_is_an_error_saying_it_cannot_refresh() {
    let mut site = Site::start();
    let laptop = Laptop::new();
    Credential::of(&laptop.jwt(&site));
    site.fixture.issuer.daemon.terminate();
    let expired = rfc3339(OffsetDateTime::now_utc() - time::Duration::seconds(1));
    edit(&laptop.jwt_file(), |v| {
        v["expirationTimestamp"] = expired.clone().into();
    });
    let out = laptop.jwt(&site);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "nothing for kubectl to misread");
    let text = stderr(&out);
    assert!(
        text.contains("cannot refresh the token for kube-apiserver"),
        "{text}"
    );
    assert!(
        text.contains(&format!("the last one expired at {expired}")),
        "{text}"
    );
}

#[test]
fn logout_forgets_the_jwt_with_the_session() {
    let site = Site::start();
    let laptop = Laptop::new();
    Credential::of(&laptop.jwt(&site));
    assert_eq!(laptop.token_files().len(), 2);
    let out = laptop.run(&site.fixture, &["--logout"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        laptop.token_files().is_empty(),
        "{:?}",
        laptop.token_files()
    );
}

#[test]
fn the_jwt_is_nowhere_in_the_daemons_log() {
    let site = Site::start();
    let laptop = Laptop::new();
    let c = Credential::of(&laptop.jwt(&site));
    make_due(&laptop);
    let again = Credential::of(&laptop.jwt(&site));
    let log = site.fixture.issuer.daemon.log();
    for token in [c.token(), again.token()] {
        let signature = token.rsplit('.').next().unwrap();
        assert!(!log.contains(signature), "a JWT in the log");
    }
}
