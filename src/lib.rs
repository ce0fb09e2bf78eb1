//! kube-ldap-webhook: Kubernetes webhook token authentication against LDAP and Active
//! Directory. See docs/architecture.md for how a review flows through these modules.
//!
//! The library exists for the binary (`src/main.rs`), the benchmarks and the fuzz targets;
//! what they use is public, everything else is the crate's own.

#![deny(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]
// No unwrap on what a network or a file can make fail; tests may (a panic is their failure).
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod audit;
mod authconfig;
mod authenticator;
mod cache;
mod clock;
mod config;
pub mod credential;
mod daemon;
mod directory;
mod dn;
mod identity;
mod issued;
mod jwt;
pub mod kubeconfig;
mod lockout;
mod login;
mod logwriter;
mod metrics;
mod negotiate;
mod outcome;
mod process;
mod reserved;
mod secret;
mod server;
mod systemd;
mod throttle;
mod tls;
mod token;
mod tokenreview;

// `serve`, `check-config` and `keygen` (main.rs). `credential` and `kubeconfig` are the
// client-side commands: each a module whose public items are that command's, no more.
pub use authconfig::{authentication_config, AuthConfigError};
pub use config::{load as load_config, path_from as config_path, Config, Preset};
pub use daemon::{check_config, serve, DaemonError};
pub use issued::{keygen, KeyError};
pub use jwt::keygen_es256;
pub use process::forbid_core_dumps;

// The benchmarks' baseline server and LDAP client stand on the daemon's own HTTP settings
// and TLS; the connection tests size their clients by the listeners' bounds.
pub use server::{
    anonymous_worst_case, connection_builder, LOGIN_CONNECTION_BYTES, OPS_MAX_CONNECTIONS,
};
pub use tls::{install_default_provider, ldap_client_config, server_config};

/// Entry points of the parsers that see untrusted bytes, for the fuzz targets (`fuzz/`).
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::directory::classify::{classify_bind, BindVerdict};
    pub use crate::directory::ppolicy::{
        parse_ppolicy_value, policy_from_controls, PasswordWarning, PolicyResponse,
    };
    pub use crate::identity::UserInfo;
    pub use crate::secret::Password;
    pub use crate::token::{decode, Credentials, Refusal, MAX_TOKEN_LEN};
    pub use crate::tokenreview::{
        parse, parse_go_duration, render, Audiences, ParseError, Request, Token, User, Version,
    };
}
