//! The TLS expiry metrics: the serving certificate's notAfter per TLS listener and the
//! client CA's, from real certificate files, at start and after a reload; a reload that
//! refuses the new files leaves the served certificate's expiry shown.

use time::{Duration, OffsetDateTime};

use crate::support::issued::{Issuer, KeyPair};
use crate::support::*;

const CERTIFICATE: &str = "kube_ldap_webhook_tls_certificate_expiry_timestamp_seconds";
const CLIENT_CA: &str = "kube_ldap_webhook_tls_client_ca_expiry_timestamp_seconds";
const RELOADED: &str = "configuration, certificates and CAs reloaded";
const REFUSED: &str = "reload refused";

/// A daemon with its review and login listeners; no directory is needed to serve
/// certificates, so its one LDAP URL answers nothing.
fn issuer(keys: &KeyPair) -> Issuer {
    Issuer::start_with(
        Daemon::builder().url("ldap://127.0.0.1:1"),
        &[],
        keys,
        "",
        "",
    )
}

/// A whole second `days` from now: certificates carry notAfter to the second.
fn days_from_now(days: i64) -> Result<OffsetDateTime, time::error::ComponentRange> {
    (OffsetDateTime::now_utc() + Duration::days(days)).replace_nanosecond(0)
}

fn expiry(d: &Daemon, name: &str, listener: &str) -> f64 {
    d.metric(name, &[("listener", listener)])
}

#[test]
fn each_tls_listener_shows_the_serving_certificates_not_after_from_the_start() -> TestResult {
    let keys = KeyPair::new();
    let mut i = issuer(&keys);
    let not_after = days_from_now(10)?;
    i.daemon
        .pki
        .reissue_server_until("kube-ldap-webhook", not_after);
    i.daemon.terminate();
    i.daemon.start_again(&[]);
    let want = not_after.unix_timestamp() as f64;
    assert_eq!(expiry(&i.daemon, CERTIFICATE, "reviews"), want);
    assert_eq!(expiry(&i.daemon, CERTIFICATE, "login"), want);
    Ok(())
}

#[test]
fn a_reload_shows_the_replaced_serving_certificates_not_after() -> TestResult {
    let keys = KeyPair::new();
    let i = issuer(&keys);
    let first = days_from_now(30)?;
    i.daemon
        .pki
        .reissue_server_until("kube-ldap-webhook", first);
    i.daemon.signal(libc::SIGHUP);
    i.daemon.wait_for_log_count(RELOADED, 1);
    assert_eq!(
        expiry(&i.daemon, CERTIFICATE, "reviews"),
        first.unix_timestamp() as f64
    );

    let renewed = days_from_now(90)?;
    i.daemon
        .pki
        .reissue_server_until("kube-ldap-webhook", renewed);
    i.daemon.signal(libc::SIGHUP);
    i.daemon.wait_for_log_count(RELOADED, 2);
    let want = renewed.unix_timestamp() as f64;
    assert_eq!(expiry(&i.daemon, CERTIFICATE, "reviews"), want);
    assert_eq!(expiry(&i.daemon, CERTIFICATE, "login"), want);
    Ok(())
}

#[test]
fn a_reload_shows_the_replaced_client_cas_not_after() -> TestResult {
    let keys = KeyPair::new();
    let i = issuer(&keys);
    let not_after = days_from_now(400)?;
    i.daemon.pki.replace_client_ca_until(not_after);
    i.daemon.signal(libc::SIGHUP);
    i.daemon.wait_for_log(RELOADED);
    assert_eq!(
        expiry(&i.daemon, CLIENT_CA, "reviews"),
        not_after.unix_timestamp() as f64
    );
    Ok(())
}

#[test]
fn a_certificate_that_is_not_x509_is_refused_at_reload_and_the_served_expiry_stays() -> TestResult {
    let keys = KeyPair::new();
    let i = issuer(&keys);
    let served = expiry(&i.daemon, CERTIFICATE, "reviews");
    assert!(served > 0.0, "no expiry shown at start");
    // Valid PEM around three bytes that are no certificate.
    std::fs::write(
        &i.daemon.pki.server_cert,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )?;
    i.daemon.signal(libc::SIGHUP);
    i.daemon.wait_for_log(REFUSED);
    let log = i.daemon.log();
    assert!(
        log.contains(&i.daemon.pki.server_cert.display().to_string()),
        "the refusal names the file:\n{log}"
    );
    assert_eq!(expiry(&i.daemon, CERTIFICATE, "reviews"), served);
    assert_eq!(expiry(&i.daemon, CERTIFICATE, "login"), served);
    Ok(())
}

/// The `name` series of `metrics` labelled `listener="login"`.
fn login_series<'a>(metrics: &'a str, name: &str) -> Vec<&'a str> {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(r#"listener="login""#))
        .collect()
}

#[test]
fn a_reload_that_turns_the_login_endpoint_off_drops_its_expiry() -> TestResult {
    let keys = KeyPair::new();
    let i = issuer(&keys);
    assert_eq!(login_series(&i.daemon.metrics(), CERTIFICATE).len(), 1);
    let config = std::fs::read_to_string(&i.daemon.config)?;
    let login = format!("[login]\nlisten = \"127.0.0.1:{}\"\n", i.login_port);
    assert!(config.contains(&login), "{config}");
    std::fs::write(&i.daemon.config, config.replace(&login, ""))?;
    i.daemon.signal(libc::SIGHUP);
    i.daemon.wait_for_log(RELOADED);
    let metrics = i.daemon.metrics();
    assert_eq!(login_series(&metrics, CERTIFICATE), Vec::<&str>::new());
    assert!(expiry(&i.daemon, CERTIFICATE, "reviews") > 0.0, "{metrics}");
    Ok(())
}
