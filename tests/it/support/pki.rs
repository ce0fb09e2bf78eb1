//! Certificates, made fresh for every daemon and directory with rcgen.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType};

pub struct Ca {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        Ca::new_until(name, CertificateParams::default().not_after)
    }

    /// A CA valid until `not_after`.
    pub fn new_until(name: &str, not_after: time::OffsetDateTime) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.not_after = not_after;
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A leaf certificate and its key (PEM): server (for localhost and 127.0.0.1) or client
    /// (CN only).
    pub fn issue(&self, cn: &str, server: bool) -> (String, String) {
        self.issue_until(cn, server, CertificateParams::default().not_after)
    }

    /// [`Ca::issue`], valid until `not_after`.
    pub fn issue_until(
        &self,
        cn: &str,
        server: bool,
        not_after: time::OffsetDateTime,
    ) -> (String, String) {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.not_after = not_after;
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        if server {
            p.subject_alt_names = vec![
                SanType::DnsName("localhost".try_into().unwrap()),
                SanType::IpAddress("127.0.0.1".parse().unwrap()),
            ];
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        } else {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Every certificate a daemon and its clients need, written to `dir`.
pub struct Pki {
    pub dir: PathBuf,
    pub server_ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A client certificate from a CA the daemon does not trust.
    pub rogue_cert: PathBuf,
    pub rogue_key: PathBuf,
    server_ca_obj: Ca,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        let w = |name: &str, body: &str| {
            let p = dir.join(name);
            std::fs::write(&p, body).unwrap();
            p
        };
        let server_ca = Ca::new("test server CA");
        let client_ca = Ca::new("test client CA");
        let rogue_ca = Ca::new("rogue CA");
        let (sc, sk) = server_ca.issue("kube-ldap-webhook", true);
        let (cc, ck) = client_ca.issue("kube-apiserver", false);
        let (rc, rk) = rogue_ca.issue("kube-apiserver", false);
        Pki {
            dir: dir.to_path_buf(),
            server_ca: w("server-ca.crt", &server_ca.cert.pem()),
            server_cert: w("server.crt", &sc),
            server_key: w("server.key", &sk),
            client_ca: w("client-ca.crt", &client_ca.cert.pem()),
            client_cert: w("client.crt", &cc),
            client_key: w("client.key", &ck),
            rogue_cert: w("rogue.crt", &rc),
            rogue_key: w("rogue.key", &rk),
            server_ca_obj: server_ca,
        }
    }

    /// The client certificate and key the daemon trusts: kube-apiserver's.
    pub fn client_identity(&self) -> (&Path, &Path) {
        (&self.client_cert, &self.client_key)
    }

    /// A client certificate and key from a CA the daemon does not trust.
    pub fn rogue_identity(&self) -> (&Path, &Path) {
        (&self.rogue_cert, &self.rogue_key)
    }

    /// A new server certificate from the same CA (for reload tests).
    pub fn reissue_server(&self, cn: &str) {
        self.reissue_server_until(cn, CertificateParams::default().not_after);
    }

    /// [`Pki::reissue_server`], valid until `not_after`.
    pub fn reissue_server_until(&self, cn: &str, not_after: time::OffsetDateTime) {
        let (c, k) = self.server_ca_obj.issue_until(cn, true, not_after);
        std::fs::write(&self.server_cert, c).unwrap();
        std::fs::write(&self.server_key, k).unwrap();
    }

    /// Replaces the client CA file with a new CA valid until `not_after` (the client
    /// certificate written before no longer chains to it).
    pub fn replace_client_ca_until(&self, not_after: time::OffsetDateTime) {
        let ca = Ca::new_until("test client CA, replaced", not_after);
        std::fs::write(&self.client_ca, ca.cert.pem()).unwrap();
    }
}
