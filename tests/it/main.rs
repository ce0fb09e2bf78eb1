//! The integration tests: one binary, one module per area, against real servers the
//! tests start themselves (slapd, a Samba AD DC, 389-ds) and the real daemon binary.
//! `support` is the shared harness (also included by benches/).

// A real daemon and real LDAP servers run on the real clock (clippy.toml bans now()
// in the crate, where the clock is `clock.rs`).
#![allow(clippy::disallowed_methods)]

mod support;

mod active_directory;
mod alerts;
mod alerts_live;
mod audit;
mod cache;
mod check_config;
mod connections;
mod credential;
mod credential_jwt;
mod credential_login;
mod demo;
mod directories;
mod directory_answers;
mod ds389;
mod failover;
mod fuzz_seeds;
mod group_policy;
mod hardening;
mod issued_recheck;
mod issued_tokens;
mod jwt_commands;
mod jwt_issuer;
mod kerberos;
mod kerberos_plugin;
mod key_files;
mod kubeconfig;
mod lockout;
mod login_endpoint;
mod login_port;
mod ops;
mod password_expiry;
mod password_policy;
mod posix;
mod reviews;
mod tls_expiry;
