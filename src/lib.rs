//! kube-ldap-webhook: Kubernetes webhook token authentication against LDAP and Active
//! Directory. See docs/architecture.md for how a review flows through these modules.
//!
//! The library exists for the binary (`src/main.rs`), the benchmarks and the fuzz targets;
//! what they use is public, everything else is the crate's own.

#![deny(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]
// No unwrap on what a network or a file can make fail; tests may (a panic is their failure).
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod authenticator;
mod cache;
mod clock;
pub mod config;
pub mod credential;
pub mod daemon;
mod directory;
mod identity;
pub mod issued;
pub mod kubeconfig;
mod lockout;
mod login;
mod metrics;
mod outcome;
pub mod process;
mod secret;
pub mod server;
mod systemd;
mod throttle;
pub mod tls;
pub mod token;
pub mod tokenreview;

/// Entry points of the parsers that see untrusted bytes, for the fuzz targets (`fuzz/`).
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::directory::classify::{classify_bind, BindVerdict};
    pub use crate::directory::ppolicy::{
        parse_ppolicy_value, policy_from_controls, PasswordWarning, PolicyResponse,
    };
    pub use crate::identity::UserInfo;
    pub use crate::secret::Password;
    pub use crate::server::parse_go_duration;
}
