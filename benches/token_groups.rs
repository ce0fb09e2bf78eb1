//! `make bench` (token_groups): a user's nested groups on Active Directory three ways, on
//! a Samba DC (tests/fixtures/samba) holding 3,000 nested groups six levels deep:
//!
//! - `tokenGroups` (`ldap.group.token_groups`, the AD preset's default): one read of the
//!   user's token, the SIDs resolved in batches and cached for a minute;
//! - the in-chain matching rule (`token_groups = false`): one search the DC answers by
//!   following every group's members;
//! - the level walk (a filter of one's own): a search per level and batch of 50.
//!
//! The same users log in through three daemons (release build, answer cache off), rounds
//! interleaved in a rotating order so that drift in the machine's load hits every method
//! alike. Per method: the review's latency (user search, then bind and groups together)
//! and the time of the group read alone (the daemon's own
//! `kube_ldap_webhook_ldap_operation_duration_seconds{operation="search_groups"}`, summed
//! per review), and the group searches it sent. Every method must give every user the
//! same groups, computed here from the LDIF. Ratios are against tokenGroups, same run.
//! Prints a table and writes `target/bench/token_groups.json`.
#![allow(clippy::disallowed_methods)] // a real daemon and a real DC run on the real clock

// The integration tests' harness, whole: this bench uses a part of it.
#[allow(dead_code, unused_imports)]
#[path = "../tests/it/support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::time::Instant;

use base64::Engine;
use serde_json::json;

use support::{token, Daemon, Dc, Site};

/// Groups per level, bottom (users' direct groups) to top: 3,000 in six levels.
const LEVELS: [usize; 6] = [1200, 800, 500, 300, 150, 50];
/// Groups one level up that each group is a member of.
const PARENTS: usize = 2;
/// Bottom-level groups each user is a direct member of.
const DIRECT: usize = 3;
const PASSWORD: &str = "Passw0rd!bench-user";
const OU: &str = "OU=Bench,DC=example,DC=test";
const WALK_FILTER: &str =
    "(&(objectClass=group)(groupType:1.2.840.113556.1.4.803:=2147483648)(member={dn}))";

/// A fixed xorshift: the same directory every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    /// `k` distinct numbers below `n`.
    fn pick(&mut self, k: usize, n: usize) -> BTreeSet<usize> {
        let mut s = BTreeSet::new();
        while s.len() < k {
            s.insert(self.below(n));
        }
        s
    }
}

fn group_cn(level: usize, i: usize) -> String {
    format!("bg{level}-{i:04}")
}

fn user_name(u: usize) -> String {
    format!("bench-user-{u:03}")
}

/// The bench directory: its LDIF, and each user's groups (names) as the LDIF makes them.
struct Domain {
    ldif: String,
    groups: Vec<BTreeSet<String>>,
}

fn domain(users: usize) -> Domain {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // members[level][i]: the DNs listed as members of group i of that level.
    let mut members: Vec<Vec<Vec<String>>> = LEVELS.iter().map(|&n| vec![Vec::new(); n]).collect();
    // parents[level][i]: the groups one level up that group i of that level is in.
    let mut parents: Vec<Vec<BTreeSet<usize>>> = Vec::new();
    let users_dn = "CN=Users,DC=example,DC=test";
    let pwd: Vec<u8> = format!("\"{PASSWORD}\"")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let pwd = base64::engine::general_purpose::STANDARD.encode(pwd);
    let mut ldif = format!("dn: {OU}\nobjectClass: organizationalUnit\n\n");
    let mut direct = Vec::new();
    for u in 0..users {
        let name = user_name(u);
        ldif += &format!(
            "dn: CN={name},{users_dn}\nobjectClass: user\nsAMAccountName: {name}\n\
             userPrincipalName: {name}@example.test\nuserAccountControl: 512\nunicodePwd:: {pwd}\n\n"
        );
        let mine = rng.pick(DIRECT, LEVELS[0]);
        for &g in &mine {
            members[0][g].push(format!("CN={name},{users_dn}"));
        }
        direct.push(mine);
    }
    for level in 0..LEVELS.len() {
        let up = LEVELS.get(level + 1).copied();
        let mut mine = Vec::new();
        for i in 0..LEVELS[level] {
            let cn = group_cn(level, i);
            ldif += &format!("dn: CN={cn},{OU}\nobjectClass: group\nsAMAccountName: {cn}\n");
            for m in &members[level][i] {
                ldif += &format!("member: {m}\n");
            }
            ldif += "\n";
            let p = up.map(|n| rng.pick(PARENTS, n)).unwrap_or_default();
            if let Some(next) = members.get_mut(level + 1) {
                for &j in &p {
                    next[j].push(format!("CN={cn},{OU}"));
                }
            }
            mine.push(p);
        }
        parents.push(mine);
    }
    let groups = direct
        .iter()
        .map(|d| {
            let mut out = BTreeSet::new();
            let mut frontier: BTreeSet<usize> = d.clone();
            for (level, up) in parents.iter().enumerate() {
                let mut next = BTreeSet::new();
                for &g in &frontier {
                    out.insert(group_cn(level, g));
                    next.extend(up[g].iter().copied());
                }
                frontier = next;
            }
            out
        })
        .collect();
    Domain { ldif, groups }
}

/// One method's daemon and what it measured.
struct Method {
    name: &'static str,
    daemon: Daemon,
    review_ms: Vec<f64>,
    group_ms: Vec<f64>,
    searches: Vec<f64>,
}

fn metric_sum(d: &Daemon, name: &str) -> f64 {
    d.metric(name, &[("operation", "search_groups")])
}

impl Method {
    fn start(name: &'static str, dc: &Dc, group: &str) -> Method {
        let site = Site {
            group_base_dn: OU.into(),
            ..dc.site()
        };
        let daemon = dc
            .daemon()
            .site(&site)
            .log_level("info")
            .section("group", format!("nested = true\n{group}"))
            .section("cache", "ttl = \"0s\"\nnegative_ttl = \"0s\"")
            // The in-chain rule can take longer than the tests' 30 s on a busy machine.
            .env("KUBE_LDAP_WEBHOOK_LDAP__TIMEOUT", "5m")
            .env("KUBE_LDAP_WEBHOOK_SERVER__REQUEST_TIMEOUT", "5m")
            .start();
        Method {
            name,
            daemon,
            review_ms: Vec::new(),
            group_ms: Vec::new(),
            searches: Vec::new(),
        }
    }

    /// Logs `user` in and checks the groups against `want`.
    async fn review(&mut self, user: &str, want: &BTreeSet<String>) {
        let seconds = "kube_ldap_webhook_ldap_operation_duration_seconds_sum";
        let ops = "kube_ldap_webhook_ldap_operations_total";
        let (s0, n0) = (
            metric_sum(&self.daemon, seconds),
            metric_sum(&self.daemon, ops),
        );
        let t = Instant::now();
        let a = self
            .daemon
            .client()
            .review_with_timeout(&self.daemon.url(), "v1", &token(user, PASSWORD), "5m")
            .await;
        let elapsed = t.elapsed();
        let got: BTreeSet<String> =
            serde_json::from_value(a.body["status"]["user"]["groups"].clone()).unwrap_or_default();
        assert_eq!(
            &got,
            want,
            "{}: {user}: {}",
            self.name,
            &a.raw[..a.raw.len().min(300)]
        );
        self.review_ms.push(elapsed.as_secs_f64() * 1e3);
        self.group_ms
            .push((metric_sum(&self.daemon, seconds) - s0) * 1e3);
        self.searches.push(metric_sum(&self.daemon, ops) - n0);
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn main() {
    // The daemon as it ships: no audit stream.
    support::without_audit();
    let quick = std::env::var_os("KLW_BENCH_QUICK").is_some();
    // The in-chain rule takes seconds a review here: 20 users, twice, is a quarter hour.
    let (users, rounds) = if quick { (6, 1) } else { (20, 2) };
    let d = domain(users);
    let ldif = support::repo().join("target/bench/token_groups.ldif");
    if let Some(dir) = ldif.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = std::fs::write(&ldif, &d.ldif) {
        panic!("cannot write {}: {e}", ldif.display());
    }
    let started = Instant::now();
    let dc = match Dc::start_with("bench", &ldif) {
        Ok(dc) => dc,
        Err(e) => panic!("the Samba AD DC did not start: {e}"),
    };
    println!(
        "Samba AD DC with {} groups ({} levels) and {users} users up in {:.0} s",
        LEVELS.iter().sum::<usize>(),
        LEVELS.len(),
        started.elapsed().as_secs_f64()
    );
    let Ok(rt) = tokio::runtime::Runtime::new() else {
        panic!("no tokio runtime");
    };
    rt.block_on(async move {
        let walk = format!("filter = \"{WALK_FILTER}\"");
        let mut methods = [
            Method::start("tokenGroups", &dc, ""),
            Method::start("in-chain rule", &dc, "token_groups = false"),
            Method::start("level walk", &dc, &walk),
        ];
        for round in 0..rounds {
            for u in 0..users {
                for k in 0..methods.len() {
                    let m = &mut methods[(k + u + round) % 3];
                    m.review(&user_name(u), &d.groups[u]).await;
                }
            }
        }
        report(&methods, &d, users, rounds);
    });
}

fn report(methods: &[Method; 3], d: &Domain, users: usize, rounds: usize) {
    let per_user = mean(&d.groups.iter().map(|g| g.len() as f64).collect::<Vec<_>>());
    println!(
        "AD group lookup, {users} users x {rounds} rounds, {per_user:.0} groups per user on average"
    );
    println!(
        "   {:<16}{:>14}{:>14}{:>16}{:>18}",
        "method", "review p50 ms", "groups p50 ms", "groups mean ms", "searches/review"
    );
    let base = &methods[0];
    let (cold_ms, cold_searches) = (
        base.group_ms.first().copied().unwrap_or(f64::NAN),
        base.searches.first().copied().unwrap_or(f64::NAN),
    );
    let mut rows = Vec::new();
    for m in methods {
        println!(
            "   {:<16}{:>14.1}{:>14.1}{:>16.1}{:>18.1}",
            m.name,
            median(&m.review_ms),
            median(&m.group_ms),
            mean(&m.group_ms),
            mean(&m.searches)
        );
        rows.push(json!({
            "method": m.name,
            "review_ms_p50": median(&m.review_ms),
            "groups_ms_p50": median(&m.group_ms),
            "groups_ms_mean": mean(&m.group_ms),
            "searches_per_review": mean(&m.searches),
        }));
    }
    println!(
        "   tokenGroups' first review (no SID known yet): groups {cold_ms:.1} ms, {cold_searches} searches"
    );
    for m in &methods[1..] {
        println!(
            "=> {} / tokenGroups: group lookup p50 {:.1}x, mean {:.1}x; review p50 {:.1}x",
            m.name,
            median(&m.group_ms) / median(&base.group_ms),
            mean(&m.group_ms) / mean(&base.group_ms),
            median(&m.review_ms) / median(&base.review_ms),
        );
    }
    let out = support::repo().join("target/bench/token_groups.json");
    let report = json!({
        "groups": LEVELS.iter().sum::<usize>(),
        "levels": LEVELS.len(),
        "users": users,
        "rounds": rounds,
        "groups_per_user": per_user,
        "token_groups_first_review": { "groups_ms": cold_ms, "searches": cold_searches },
        "methods": rows,
    });
    if let Ok(body) = serde_json::to_vec_pretty(&report) {
        let _ = std::fs::write(out, body);
    }
}
