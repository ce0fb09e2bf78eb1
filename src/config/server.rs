//! `[server]`: the TokenReview listener and the ops listener.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::defaults as d;
use super::raw::RawServer;
use super::{ConfigError, Ctx, Server};

pub(super) fn resolve(s: RawServer, cx: &Ctx) -> Result<Server, ConfigError> {
    let listen = addr(
        cx,
        "server.listen",
        s.listen.as_deref().unwrap_or(d::LISTEN),
    )?;
    let ops = s.ops_listen.as_deref().unwrap_or(d::OPS_LISTEN);
    let ops_listen = if ops.trim().is_empty() {
        None
    } else {
        Some(addr(cx, "server.ops_listen", ops)?)
    };
    let path = s.path.unwrap_or_else(|| d::PATH.into());
    if !path.starts_with('/') {
        return Err(cx.invalid("server.path", "must start with `/`"));
    }
    // "/authenticate/" serves /authenticate; "//" serves "/" (not "", which no request has).
    let path = match path.trim_end_matches('/') {
        "" => "/".to_string(),
        t => t.to_string(),
    };
    Ok(Server {
        listen,
        tls_cert_file: s
            .tls_cert_file
            .unwrap_or_else(|| PathBuf::from(d::TLS_CERT_FILE)),
        tls_key_file: s
            .tls_key_file
            .unwrap_or_else(|| PathBuf::from(d::TLS_KEY_FILE)),
        client_ca_file: s
            .client_ca_file
            .unwrap_or_else(|| PathBuf::from(d::CLIENT_CA_FILE)),
        path,
        ops_listen,
        handshake_timeout: cx.duration(&d::HANDSHAKE_TIMEOUT, s.handshake_timeout)?,
        request_timeout: cx.duration(&d::REQUEST_TIMEOUT, s.request_timeout)?,
        max_connections: cx.count(&d::SERVER_MAX_CONNECTIONS, s.max_connections)?,
        max_connections_per_source: cx
            .count(&d::MAX_CONNECTIONS_PER_SOURCE, s.max_connections_per_source)?,
        max_handshakes: cx.count(&d::MAX_HANDSHAKES, s.max_handshakes)?,
        max_handshakes_per_source: cx
            .count(&d::MAX_HANDSHAKES_PER_SOURCE, s.max_handshakes_per_source)?,
        idle_timeout: cx.duration(&d::IDLE_TIMEOUT, s.idle_timeout)?,
    })
}

fn addr(cx: &Ctx, key: &'static str, s: &str) -> Result<SocketAddr, ConfigError> {
    s.parse()
        .map_err(|_| cx.invalid(key, format!("`{s}` is not an address like 0.0.0.0:8443")))
}
