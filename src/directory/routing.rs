//! Several directories behind one [`Backend`]: a login goes to the directory its domain part
//! chose (see [`Config::login`]), so the review policy needs no idea how many there are.
//! `[ldap]` alone is the common case: one directory, routed to without a lookup.

use std::sync::Arc;
use std::time::Instant;

use super::{Account, Backend, Directory, Failure, Found};
use crate::config::Config;
use crate::login::Login;
use crate::metrics::Metrics;
use crate::secret::Password;
use crate::tls::TlsError;

/// Every configured directory, `[ldap]` first, in the order [`Config::each_directory`]
/// lists them, which is the order a [`Login`]'s directory index counts in.
pub(crate) struct Directories {
    members: Vec<Directory>,
}

impl Directories {
    /// One client per directory, each with the TLS roots of its own `ca_file`.
    pub(crate) fn new(config: &Config, metrics: &Arc<Metrics>) -> Result<Directories, TlsError> {
        let mut members = Vec::new();
        for (name, ldap, _) in config.each_directory() {
            let tls = crate::tls::ldap_client_config(ldap.ca_file.as_deref())?;
            members.push(Directory::new(name, ldap.clone(), tls, metrics.clone()));
        }
        Ok(Directories { members })
    }

    /// Starts what runs in the background (DNS lookups). Needs a tokio runtime.
    pub(crate) fn start(&self) {
        for d in &self.members {
            d.start();
        }
    }

    fn of(&self, login: &Login) -> Result<&Directory, Failure> {
        // Logins and directories come from the same config; a miss would be a bug, and is
        // an error rather than another directory's answer.
        self.members
            .get(login.directory())
            .ok_or_else(|| Failure::Error("the login names no configured directory".into()))
    }

    /// Probes every directory at once: whether each has a server that answers, and what its
    /// servers are.
    pub(crate) async fn probe(&self, deadline: Instant) -> Readiness {
        let probes = self.members.iter().map(|d| async move {
            Probe {
                directory: d.name().to_string(),
                answer: d.probe(deadline).await,
                details: d.describe(),
            }
        });
        Readiness {
            probes: futures_util::future::join_all(probes).await,
        }
    }
}

/// What probing one directory found.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    pub(crate) directory: String,
    /// The URL of the server that answered, or why none did.
    pub(crate) answer: Result<String, String>,
    /// Where the servers came from (with `ldap.discover`).
    pub(crate) details: Vec<String>,
}

/// The probes of every directory: ready when each has a server that answers.
#[derive(Debug, Clone)]
pub(crate) struct Readiness {
    pub(crate) probes: Vec<Probe>,
}

impl Readiness {
    pub(crate) fn ready(&self) -> bool {
        self.probes.iter().all(|p| p.answer.is_ok())
    }

    /// Only the directory `name`, if there is one by that name.
    pub(crate) fn only(&self, name: &str) -> Option<Readiness> {
        let p = self.probes.iter().find(|p| p.directory == name)?;
        Some(Readiness {
            probes: vec![p.clone()],
        })
    }

    /// The text of /readyz: one line per directory (named when there are several, as the
    /// daemon with one directory always answered), and its servers' origins below it.
    pub(crate) fn render(&self, named: bool) -> String {
        let mut out = String::new();
        for p in &self.probes {
            if named {
                out.push_str(&format!("{}: ", p.directory));
            }
            match &p.answer {
                Ok(url) => out.push_str(&format!("ok: {url} answers\n")),
                Err(e) => out.push_str(&format!("no LDAP server answers: {e}\n")),
            }
            for line in &p.details {
                out.push_str(&format!("  {line}\n"));
            }
        }
        out
    }
}

impl Backend for Directories {
    async fn find(&self, login: &Login, deadline: Instant) -> Result<Account, Failure> {
        self.of(login)?.find(login, deadline).await
    }

    async fn verify(
        &self,
        account: &Account,
        login: &Login,
        password: &Password,
        deadline: Instant,
    ) -> Result<Found, Failure> {
        self.of(login)?
            .verify(account, login, password, deadline)
            .await
    }

    async fn decoy(&self, login: &Login, password: &Password, deadline: Instant) {
        if let Ok(d) = self.of(login) {
            d.decoy(login, password, deadline).await;
        }
    }

    async fn recheck(&self, dn: &str, login: &Login, deadline: Instant) -> Result<Found, Failure> {
        self.of(login)?.recheck(dn, login, deadline).await
    }

    async fn find_principal(&self, login: &Login, deadline: Instant) -> Result<Found, Failure> {
        self.of(login)?.find_principal(login, deadline).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(directory: &str, answer: Result<&str, &str>) -> Probe {
        Probe {
            directory: directory.into(),
            answer: answer.map(str::to_string).map_err(str::to_string),
            details: vec![],
        }
    }

    #[test]
    fn ready_only_when_every_directory_answers() {
        let both = Readiness {
            probes: vec![
                probe("default", Ok("ldaps://a")),
                probe("partner", Err("refused")),
            ],
        };
        assert!(!both.ready());
        assert!(both.only("default").is_some_and(|r| r.ready()));
        assert!(both.only("partner").is_some_and(|r| !r.ready()));
        assert!(both.only("nobody").is_none());
        assert_eq!(
            both.render(true),
            "default: ok: ldaps://a answers\npartner: no LDAP server answers: refused\n"
        );
    }

    #[test]
    fn one_directory_reads_as_it_always_did() {
        let one = Readiness {
            probes: vec![probe("default", Ok("ldaps://a"))],
        };
        assert_eq!(one.render(false), "ok: ldaps://a answers\n");
    }
}
