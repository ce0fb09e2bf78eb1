//! The minimum LDAP work of a cache miss, done directly with ldap3 on warm connections.

use std::time::{Duration, Instant};

use crate::support::{Slapd, SERVICE_DN, SERVICE_PASSWORD};
use crate::{GROUPS, PASSWORD, PEOPLE};

pub struct Direct {
    service: ldap3::Ldap,
    bind: ldap3::Ldap,
}

impl Direct {
    /// Two ldaps connections to `slapd`: one bound as the service account, one for user binds.
    pub async fn connect(slapd: &Slapd) -> Direct {
        let tls = kube_ldap_webhook::ldap_client_config(Some(&slapd.ca_file)).unwrap();
        let conn = || async {
            let settings = ldap3::LdapConnSettings::new()
                .set_config(tls.clone())
                .set_conn_timeout(Duration::from_secs(5));
            let (conn, ldap) = ldap3::LdapConnAsync::with_settings(settings, &slapd.ldaps_url())
                .await
                .unwrap();
            ldap3::drive!(conn);
            ldap
        };
        let mut service = conn().await;
        service
            .simple_bind(SERVICE_DN, SERVICE_PASSWORD)
            .await
            .unwrap()
            .success()
            .unwrap();
        Direct {
            service,
            bind: conn().await,
        }
    }

    /// One search, one bind, one group search for user `i`: the least a miss can cost.
    pub async fn review(&mut self, i: usize) -> Duration {
        let t0 = Instant::now();
        let filter = format!("(&(objectClass=inetOrgPerson)(uid=user{i}))");
        self.service
            .with_search_options(ldap3::SearchOptions::new().sizelimit(2));
        let (entries, _) = self
            .service
            .search(
                PEOPLE,
                ldap3::Scope::Subtree,
                &filter,
                vec!["entryUUID", "mail", "uid"],
            )
            .await
            .unwrap()
            .success()
            .unwrap();
        assert_eq!(entries.len(), 1);
        let dn = ldap3::SearchEntry::construct(entries.into_iter().next().unwrap()).dn;
        self.bind
            .simple_bind(&dn, PASSWORD)
            .await
            .unwrap()
            .success()
            .unwrap();
        let gfilter = format!(
            "(&(objectClass=groupOfNames)(member={}))",
            ldap3::ldap_escape(&dn)
        );
        let (groups, _) = self
            .service
            .search(GROUPS, ldap3::Scope::Subtree, &gfilter, vec!["cn"])
            .await
            .unwrap()
            .success()
            .unwrap();
        assert_eq!(groups.len(), 2);
        t0.elapsed()
    }
}
