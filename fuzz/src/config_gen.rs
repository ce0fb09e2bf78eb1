//! Config files built from fuzz input as TOML documents of the real keys, so that most
//! inputs get past the TOML and serde layers into validation (raw text rarely does).

use arbitrary::{Arbitrary, Result, Unstructured};
use toml::{Table, Value};

const DURATIONS: &[&str] = &["10s", "1ns", "0s", "5 m", "1h 30m", "18446744073709551615s"];
const COUNTS: &[&str] = &["1", "0", "-1", "18446744073709551615"];

/// Every key the loader knows, with values worth trying for it: a valid one first.
const KEYS: &[(&str, &[&str])] = &[
    (
        "server.listen",
        &["0.0.0.0:8443", "[::1]:0", "localhost:1", ""],
    ),
    (
        "server.path",
        &["/authenticate", "/", "//", "/a//", "a", ""],
    ),
    ("server.ops_listen", &["", "127.0.0.1:9090", "nope"]),
    ("server.handshake_timeout", DURATIONS),
    ("server.request_timeout", DURATIONS),
    ("server.max_connections", COUNTS),
    (
        "ldap.urls",
        &[
            "ldaps://ldap.example.org",
            "ldap://127.0.0.1:389",
            "LDAP://x",
            "http://x",
            "ldaps://",
            "ldaps://a b",
        ],
    ),
    ("ldap.start_tls", &["true", "false"]),
    ("ldap.ca_file", &["ca.crt", ""]),
    ("ldap.bind_dn", &["cn=svc,dc=example,dc=org", "", " "]),
    (
        "ldap.bind_password_file",
        &[
            "bind-password",
            "./bind-password",
            "missing",
            "config.toml",
            "",
            ".",
        ],
    ),
    ("ldap.connect_timeout", DURATIONS),
    ("ldap.timeout", DURATIONS),
    (
        "ldap.directory",
        &["openldap", "active-directory", "freeipa", "custom", "ad"],
    ),
    ("ldap.max_connections", COUNTS),
    (
        "ldap.user.base_dn",
        &["ou=people,dc=example,dc=org", "", " "],
    ),
    (
        "ldap.user.filter",
        &[
            "(uid={username})",
            "(|(sAMAccountName={username})(userPrincipalName={login}))",
            "uid={username}",
            "((uid={username})",
            "(uid=x)",
            "(uid={username}))(",
        ],
    ),
    (
        "ldap.user.dn_template",
        &["uid={username},ou=people,dc=example,dc=org", "uid=x"],
    ),
    (
        "ldap.user.username_attribute",
        &["uid", "", "sAMAccountName"],
    ),
    ("ldap.user.uid_attribute", &["entryUUID", "", "objectGUID"]),
    ("ldap.user.login", &["as-typed", "strip-domain", "other"]),
    ("ldap.user.domains", &["EXAMPLE", "example.test", "", " "]),
    (
        "ldap.user.extra",
        &["example.org/email", "Example.org/x", "/x", "nodomain"],
    ),
    (
        "ldap.group.base_dn",
        &["ou=groups,dc=example,dc=org", "", " "],
    ),
    (
        "ldap.group.filter",
        &[
            "(member={dn})",
            "(memberUid={username})",
            "(cn=x)",
            "((member={dn})",
            "",
        ],
    ),
    ("ldap.group.name_attribute", &["cn", ""]),
    ("ldap.group.membership_attribute", &["memberOf", "", " "]),
    ("ldap.group.nested", &["true", "false"]),
    ("ldap.group.max_nested_depth", COUNTS),
    ("ldap.group.token_groups", &["true", "false"]),
    ("identity.username_prefix", &["", "ldap:", "system:"]),
    ("identity.group_prefix", &["", "ldap:"]),
    ("cache.capacity", COUNTS),
    ("cache.ttl", DURATIONS),
    ("cache.negative_ttl", DURATIONS),
    ("cache.stale_ttl", DURATIONS),
    ("cache.max_failures", COUNTS),
    ("cache.failure_window", DURATIONS),
    (
        "log.level",
        &[
            "info",
            "debug",
            "kube_ldap_webhook=trace,warn",
            "nonsense[",
            "",
        ],
    ),
    ("log.format", &["auto", "text", "journald", "json"]),
];

/// A key's value: mostly one that fits, sometimes any value of any type.
#[derive(Debug, Arbitrary)]
enum Val {
    Pool(u8),
    Pools(Vec<u8>),
    Str(String),
    Int(i64),
    Bool(bool),
    Dur(u64, u8),
}

/// The document, or an error when the input ran out.
pub fn document(u: &mut Unstructured<'_>) -> Result<Table> {
    let mut doc = Table::new();
    for (path, pool) in KEYS {
        // Past the input's end every choice would be the same.
        if u.is_empty() {
            break;
        }
        // Keys a working config needs are there more often than not.
        let required = matches!(
            *path,
            "ldap.urls" | "ldap.user.base_dn" | "ldap.bind_dn" | "ldap.bind_password_file"
        );
        if u.ratio(if required { 7 } else { 1 }, 8)? {
            let v = if u.ratio(1, 2)? {
                Val::Pool(0)
            } else if u.ratio(7, 8)? {
                Val::Pool(u.arbitrary()?)
            } else {
                u.arbitrary()?
            };
            insert(&mut doc, path, value(path, pool, v));
        }
    }
    if !u.is_empty() && u.ratio(1, 32)? {
        let key: String = u.arbitrary()?;
        insert(&mut doc, &key, Value::Boolean(true));
    }
    Ok(doc)
}

fn value(path: &str, pool: &[&str], v: Val) -> Value {
    let pick = |i: u8| pool[usize::from(i) % pool.len()];
    let typed = |s: &str| match (s.parse::<i64>(), s.parse::<bool>()) {
        (Ok(n), _) => Value::Integer(n),
        (_, Ok(b)) => Value::Boolean(b),
        _ => Value::String(s.into()),
    };
    let list = matches!(path, "ldap.urls" | "ldap.user.domains");
    match v {
        Val::Pool(i) if path == "ldap.user.extra" => table([(pick(i), "mail")]),
        Val::Pool(i) if list => Value::Array(vec![typed(pick(i))]),
        Val::Pool(i) => typed(pick(i)),
        Val::Pools(is) if path == "ldap.user.extra" => table(is.iter().map(|&i| (pick(i), "mail"))),
        Val::Pools(is) => Value::Array(is.iter().map(|&i| typed(pick(i))).collect()),
        Val::Str(s) if path == "ldap.user.extra" => table([(s.as_str(), "mail")]),
        Val::Str(s) => Value::String(s),
        Val::Int(n) => Value::Integer(n),
        Val::Bool(b) => Value::Boolean(b),
        Val::Dur(n, unit) => {
            const UNITS: [&str; 10] = ["ns", "us", "ms", "s", "m", "h", "d", "w", "y", ""];
            Value::String(format!("{n}{}", UNITS[usize::from(unit) % UNITS.len()]))
        }
    }
}

fn table<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Value {
    Value::Table(
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.into())))
            .collect(),
    )
}

/// Sets `a.b.c` in the document, making the tables on the way (a non-table on the way is
/// replaced).
fn insert(doc: &mut Table, path: &str, v: Value) {
    let mut keys: Vec<&str> = path.split('.').collect();
    let last = keys.pop().unwrap_or_default();
    let mut t = doc;
    for k in keys {
        let entry = t.entry(k).or_insert_with(|| Value::Table(Table::new()));
        if !entry.is_table() {
            *entry = Value::Table(Table::new());
        }
        let Value::Table(next) = entry else { return };
        t = next;
    }
    t.insert(last.to_string(), v);
}
