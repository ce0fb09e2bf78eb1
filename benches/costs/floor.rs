//! The floors of the cost table that are LDAP work: the same operations a review or a
//! login makes, done directly with ldap3 on warm connections.

use std::time::{Duration, Instant};

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};

use crate::common::BenchResult;
use crate::support::{SERVICE_DN, SERVICE_PASSWORD};
use crate::{GROUPS, PASSWORD, PEOPLE};

/// Two warm connections: one bound as the service account, one for user binds.
pub struct Direct {
    service: Ldap,
    bind: Ldap,
}

/// An ldaps connection to `url` trusting `ca`.
pub async fn connect(url: &str, ca: &std::path::Path) -> BenchResult<Ldap> {
    let tls = kube_ldap_webhook::ldap_client_config(Some(ca))?;
    let settings = LdapConnSettings::new()
        .set_config(tls)
        .set_conn_timeout(Duration::from_secs(20));
    let (conn, ldap) = LdapConnAsync::with_settings(settings, url).await?;
    ldap3::drive!(conn);
    Ok(ldap)
}

impl Direct {
    pub async fn connect(url: &str, ca: &std::path::Path) -> BenchResult<Direct> {
        let mut service = connect(url, ca).await?;
        service
            .simple_bind(SERVICE_DN, SERVICE_PASSWORD)
            .await?
            .success()?;
        Ok(Direct {
            service,
            bind: connect(url, ca).await?,
        })
    }

    /// A basic token's miss: search the user, bind as the user, search the groups.
    pub async fn miss(&mut self, uid: &str) -> BenchResult<Duration> {
        let t0 = Instant::now();
        let filter = format!("(&(objectClass=inetOrgPerson)(uid={uid}))");
        let (entries, _) = self
            .service
            .search(
                PEOPLE,
                Scope::Subtree,
                &filter,
                vec!["entryUUID", "mail", "uid"],
            )
            .await?
            .success()?;
        let Some(entry) = entries.into_iter().next() else {
            return Err(format!("no user {uid}").into());
        };
        let dn = SearchEntry::construct(entry).dn;
        self.bind.simple_bind(&dn, PASSWORD).await?.success()?;
        self.groups(&dn).await?;
        Ok(t0.elapsed())
    }

    /// An issued token's re-check: read the account by its DN, search its groups.
    pub async fn recheck(&mut self, uid: &str) -> BenchResult<Duration> {
        let t0 = Instant::now();
        let dn = format!("uid={uid},{PEOPLE}");
        let (entries, _) = self
            .service
            .search(
                &dn,
                Scope::Base,
                "(objectClass=*)",
                vec!["entryUUID", "mail", "uid"],
            )
            .await?
            .success()?;
        if entries.len() != 1 {
            return Err(format!("no entry {dn}").into());
        }
        self.groups(&dn).await?;
        Ok(t0.elapsed())
    }

    /// The directory's own bind as `uid`.
    pub async fn bind(&mut self, uid: &str) -> BenchResult<Duration> {
        let t0 = Instant::now();
        let dn = format!("uid={uid},{PEOPLE}");
        self.bind.simple_bind(&dn, PASSWORD).await?.success()?;
        Ok(t0.elapsed())
    }

    async fn groups(&mut self, dn: &str) -> BenchResult {
        let filter = format!(
            "(&(objectClass=groupOfNames)(member={}))",
            ldap3::ldap_escape(dn)
        );
        let (groups, _) = self
            .service
            .search(GROUPS, Scope::Subtree, &filter, vec!["cn"])
            .await?
            .success()?;
        if groups.len() != 2 {
            return Err(format!("{dn}: {} groups, not 2", groups.len()).into());
        }
        Ok(())
    }
}
