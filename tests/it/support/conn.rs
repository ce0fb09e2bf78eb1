//! Clients for the connection tests: raw TCP from chosen loopback addresses, TLS with or
//! without a certificate, and counts of closed connections on /metrics.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

use super::*;

/// Long enough for anything a test waits for on a loaded machine.
pub const CAP: Duration = PATIENCE;
pub const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
pub const BYSTANDER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

/// A TCP connection to `port` from `source` (any 127/8 address is the local host).
pub async fn tcp_from(source: Ipv4Addr, port: u16) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::from((source, 0))).unwrap();
    s.connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap()
}

pub async fn silent(d: &Daemon, n: usize) -> Vec<TcpStream> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(tcp_from(Ipv4Addr::LOCALHOST, d.port).await);
    }
    v
}

/// True once the peer closed (EOF or reset); false if it stayed open for `within`.
pub async fn closed_within(s: &mut (impl AsyncRead + Unpin), within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

pub async fn verified_from(d: &Daemon, source: Ipv4Addr, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let tcp = tcp_from(source, d.port).await;
    tls_connect(&d.pki, tcp, Some(d.pki.client_identity()), alpn)
        .await
        .unwrap()
}

/// The first flight of a TLS client: what a client stalled mid-handshake has sent.
pub fn client_hello(d: &Daemon) -> Vec<u8> {
    let cfg = Arc::new(client_tls(&d.pki, None));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut c = rustls::ClientConnection::new(cfg, name).unwrap();
    let mut out = Vec::new();
    c.write_tls(&mut out).unwrap();
    out
}

pub fn alice() -> String {
    token("alice", "alice-password")
}

/// A review as kube-apiserver sends it, on a new connection; must be answered within CAP.
pub async fn review_is_answered(d: &Daemon) {
    let a = tokio::time::timeout(CAP, d.login("alice", "alice-password"))
        .await
        .expect("a review is answered");
    assert_eq!(a.status, 200, "{}", a.raw);
    assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
}

pub fn closes(d: &Daemon, reason: &str) -> f64 {
    d.metric(
        "kube_ldap_webhook_connections_closed_total",
        &[("listener", "reviews"), ("reason", reason)],
    )
}

pub fn eventually(what: &str, done: impl FnMut() -> bool) {
    wait_until(done, || format!("never happened: {what}"));
}
