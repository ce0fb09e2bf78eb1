//! kube-ldap-webhook: Kubernetes webhook token authentication against LDAP and Active
//! Directory. See docs/architecture.md for how a review flows through these modules.

pub mod authenticator;
pub mod cache;
pub mod clock;
pub mod config;
pub mod credential;
pub mod daemon;
pub mod directory;
pub mod identity;
pub mod kubeconfig;
pub mod lockout;
pub mod login;
pub mod metrics;
pub mod outcome;
pub mod process;
pub mod secret;
pub mod server;
pub mod systemd;
pub mod throttle;
pub mod tls;
pub mod token;
pub mod tokenreview;
