//! A login endpoint at 127.0.0.1 with a certificate the plugin trusts but without the
//! service key of `HTTP/127.0.0.1`: it answers every login 200 with a token, and with a
//! `WWW-Authenticate: Negotiate` that is not the mutual authentication a holder of the
//! key would send. The plugin, with a real ticket from the KDC, must refuse its token and
//! must not send it the password either.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::*;

/// What an impostor saw: the scheme of each login's `Authorization`.
struct Impostor {
    url: String,
    pki: Pki,
    _dir: tempfile::TempDir,
    schemes: Arc<Mutex<Vec<String>>>,
}

impl Impostor {
    /// Serves until the test ends, answering with `WWW-Authenticate: negotiate`.
    fn start(negotiate: &'static str) -> Impostor {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let certs = CertificateDer::pem_file_iter(&pki.server_cert)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(&pki.server_key).unwrap();
        let tls = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "https://127.0.0.1:{}/login",
            listener.local_addr().unwrap().port()
        );
        let schemes = Arc::new(Mutex::new(Vec::new()));
        let seen = schemes.clone();
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let Ok(conn) = rustls::ServerConnection::new(tls.clone()) else {
                    continue;
                };
                let mut stream = rustls::StreamOwned::new(conn, tcp);
                if let Some(scheme) = read_request(&mut stream) {
                    seen.lock().unwrap().push(scheme);
                    let body = r#"{"token":"v4.public.impostor","expirationTimestamp":"2099-01-01T00:00:00Z"}"#;
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                         WWW-Authenticate: {negotiate}\r\nContent-Length: {}\r\n\
                         Connection: close\r\n\r\n{body}",
                        body.len()
                    );
                    stream.conn.send_close_notify();
                    let _ = stream.flush();
                }
            }
        });
        Impostor {
            url,
            pki,
            _dir: dir,
            schemes,
        }
    }

    fn schemes(&self) -> Vec<String> {
        self.schemes.lock().unwrap().clone()
    }
}

/// The scheme of the request's `Authorization` ("" without one), once its head is read.
fn read_request(stream: &mut impl std::io::Read) -> Option<String> {
    let mut scheme = String::new();
    for line in BufReader::new(stream).lines().take(100) {
        let line = line.ok()?;
        if line.is_empty() {
            return Some(scheme);
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") {
                scheme = value.split_whitespace().next().unwrap_or("").to_string();
            }
        }
    }
    None
}

#[test]
fn a_login_endpoint_that_cannot_prove_the_service_key_gets_neither_token_nor_password() {
    // Garbage, and a SPNEGO "accept-completed" for Kerberos that carries no AP-REP: what a
    // server without the key could send to look done.
    for forged in [
        "Negotiate AAECAwQFBgcICQ==",
        "Negotiate oRQwEqADCgEAoQsGCSqGSIb3EgECAg==",
    ] {
        let impostor = Impostor::start(forged);
        let laptop = Laptop::new();
        laptop.kinit(ALICE, ALICE_PASSWORD);
        let password = laptop.home.path().join("password");
        std::fs::write(&password, ALICE_PASSWORD).unwrap();
        let out = laptop.run_at(
            &impostor.url,
            &impostor.pki.server_ca,
            &["--password-file", password.to_str().unwrap()],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{forged}: {stderr}");
        assert!(out.stdout.is_empty(), "{forged}: no token for kubectl");
        assert!(
            stderr.contains("login with the Kerberos ticket failed")
                && stderr.contains("does not prove it holds the service key"),
            "{forged}: {stderr}"
        );
        assert_eq!(
            impostor.schemes(),
            ["Negotiate"],
            "{forged}: no password sent"
        );
    }
}
