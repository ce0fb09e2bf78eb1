//! Directory presets: the filters and attribute names `ldap.directory` fills in for keys
//! the file leaves out. `custom` has none, so every such key must be set.

use super::{LoginForms, Preset};

pub(super) struct PresetDefaults {
    pub user_filter: &'static str,
    pub username_attribute: &'static str,
    pub uid_attribute: &'static str,
    pub login: LoginForms,
    pub group_filter: &'static str,
    pub nested_group_filter: &'static str,
    pub name_attribute: &'static str,
    /// `ldap.user.kerberos_filter`: none where the schema has no principal attribute.
    pub kerberos_filter: Option<&'static str>,
}

pub(super) fn preset_defaults(p: Preset) -> Option<PresetDefaults> {
    match p {
        Preset::Openldap => Some(PresetDefaults {
            user_filter: "(&(objectClass=inetOrgPerson)(uid={username}))",
            username_attribute: "uid",
            uid_attribute: "entryUUID",
            login: LoginForms::AsTyped,
            group_filter: "(&(objectClass=groupOfNames)(member={dn}))",
            nested_group_filter: "(&(objectClass=groupOfNames)(member={dn}))",
            name_attribute: "cn",
            kerberos_filter: None,
        }),
        Preset::ActiveDirectory => Some(PresetDefaults {
            // Computers are users in AD too (objectCategory tells them apart). Disabled
            // accounts are found on purpose: their bind fails with a distinct reason
            // (data 533) that the user is told. `alice`, `EXAMPLE\alice` and
            // `alice@example.test` all reach sAMAccountName through {username} (domain
            // stripped); {login} (as typed) also finds a userPrincipalName whose name part
            // is not the sAMAccountName.
            user_filter: "(&(objectCategory=person)(objectClass=user)(|(sAMAccountName={username})(userPrincipalName={login})))",
            username_attribute: "sAMAccountName",
            uid_attribute: "objectGUID",
            login: LoginForms::StripDomain,
            // Security groups only (groupType bit 0x80000000): distribution lists are
            // mail lists that mailbox owners and Exchange self-service can often edit, so
            // they must not grant anything in Kubernetes.
            group_filter: "(&(objectClass=group)(groupType:1.2.840.113556.1.4.803:=2147483648)(member={dn}))",
            nested_group_filter: "(&(objectClass=group)(groupType:1.2.840.113556.1.4.803:=2147483648)(member:1.2.840.113556.1.4.1941:={dn}))",
            name_attribute: "cn",
            // A ticket's client is sAMAccountName@REALM (Windows logons, kinit) or, as an
            // enterprise name, the UPN; the realm already chose this directory, so its
            // name part is this domain's sAMAccountName.
            kerberos_filter: Some("(&(objectCategory=person)(objectClass=user)(|(userPrincipalName={principal})(sAMAccountName={username})))"),
        }),
        Preset::Freeipa => Some(PresetDefaults {
            user_filter: "(&(objectClass=posixAccount)(uid={username}))",
            username_attribute: "uid",
            uid_attribute: "ipaUniqueID",
            login: LoginForms::AsTyped,
            group_filter: "(&(objectClass=groupOfNames)(member={dn}))",
            nested_group_filter: "(&(objectClass=groupOfNames)(member={dn}))",
            name_attribute: "cn",
            // FreeIPA keeps each user's principal on the entry.
            kerberos_filter: Some("(&(objectClass=posixAccount)(krbPrincipalName={principal}))"),
        }),
        Preset::Rfc2307 => Some(PresetDefaults {
            user_filter: "(&(objectClass=posixAccount)(uid={username}))",
            username_attribute: "uid",
            // The number the user's files belong to: every posixAccount has one (the schema
            // requires it), it survives renames, and it means the same person on every host
            // that reads this directory. entryUUID would be as good on OpenLDAP but is not
            // what every RFC 2307 server (NIS gateways, older 389-ds, DSEE) offers.
            uid_attribute: "uidNumber",
            login: LoginForms::AsTyped,
            // memberUid holds names, not DNs: posixGroups do not nest.
            group_filter: "(&(objectClass=posixGroup)(memberUid={uid}))",
            nested_group_filter: "(&(objectClass=posixGroup)(memberUid={uid}))",
            name_attribute: "cn",
            kerberos_filter: None,
        }),
        Preset::Custom => None,
    }
}
