//! An issued token's times in the review policy, on tokio's paused clock, which moves the
//! wall clock with it (see `crate::clock`): expiry, `not_before`, the leeway for a node
//! whose clock is ahead, and the cache and stale answers that must end with the token.
//! The claims' rules alone are in `crate::issued`'s tests; these show the review applies
//! them at the time it runs, whatever the cache holds.

use std::time::SystemTime;

use super::admit::{issuing, token_for};
use super::*;
use crate::clock::wall;

/// `login.token_ttl`'s default, the life of every token signed here.
const TOKEN_TTL: Duration = Duration::from_secs(8 * 3600);

fn rechecks(fake: &Fake) -> usize {
    Fake::count(&fake.rechecks)
}

/// A token for alice as a node whose clock reads `at` would sign it.
async fn signed_at(a: &Arc<Authenticator<Fake>>, at: SystemTime) -> TestResult<String> {
    let login = a.login(&token("alice", "alice-pw"), deadline()).await;
    let account = login.account.ok_or("alice's login without an account")?;
    Ok(a.config.tokens.issued.sign(&account, at)?.token)
}

fn rfc3339(t: SystemTime) -> TestResult<String> {
    let t = time::OffsetDateTime::from(t);
    Ok(t.format(&time::format_description::well_known::Rfc3339)?)
}

#[tokio::test(start_paused = true)]
async fn a_token_past_its_lifetime_is_expired_without_asking_the_directory() -> TestResult {
    let fake = Arc::new(Fake::new());
    let (_keys, a) = issuing(fake.clone(), "")?;
    let issued = token_for(&a, "alice", "alice-pw").await?;
    tokio::time::advance(TOKEN_TTL + Duration::from_secs(1)).await;
    let r = a.review(&issued, deadline()).await;
    assert!(matches!(r.outcome, Outcome::TokenExpired), "{r:?}");
    assert_eq!(r.outcome.error(), Some("Credentials are expired"));
    assert_eq!(rechecks(&fake), 0);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_cached_answer_ends_with_its_token_not_with_cache_ttl() -> TestResult {
    let fake = Arc::new(Fake::new());
    let (_keys, a) = issuing(fake.clone(), "")?;
    let issued = token_for(&a, "alice", "alice-pw").await?;
    // One minute of the token left; `cache.ttl` is two.
    tokio::time::advance(TOKEN_TTL - Duration::from_secs(60)).await;
    let r = a.review(&issued, deadline()).await;
    assert!(matches!(r.outcome, Outcome::Accepted(_)), "{r:?}");
    let r = a.review(&issued, deadline()).await;
    assert_eq!(r.source, Source::Cache);
    tokio::time::advance(Duration::from_secs(61)).await;
    let r = a.review(&issued, deadline()).await;
    assert!(matches!(r.outcome, Outcome::TokenExpired), "{r:?}");
    assert_eq!(rechecks(&fake), 1);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn an_outage_is_bridged_with_a_stale_answer_but_never_past_the_token() -> TestResult {
    let fake = Arc::new(Fake::new());
    let (_keys, a) = issuing(fake.clone(), "")?;
    let issued = token_for(&a, "alice", "alice-pw").await?;
    // Half an hour of the token left, within `cache.stale_ttl` (1h).
    tokio::time::advance(TOKEN_TTL - Duration::from_secs(1800)).await;
    let r = a.review(&issued, deadline()).await;
    assert!(matches!(r.outcome, Outcome::Accepted(_)), "{r:?}");
    fake.set(Mode::Outage);
    tokio::time::advance(Duration::from_secs(600)).await;
    let r = a.review(&issued, deadline()).await;
    assert!(matches!(r.source, Source::Stale(_)), "{r:?}");
    assert!(matches!(r.outcome, Outcome::Accepted(_)), "{r:?}");
    tokio::time::advance(Duration::from_secs(1201)).await;
    let r = a.review(&issued, deadline()).await;
    assert!(matches!(r.outcome, Outcome::TokenExpired), "{r:?}");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn tokens_issued_before_not_before_are_refused_and_later_logins_work() -> TestResult {
    let fake = Arc::new(Fake::new());
    // Whole seconds: a token of the very second of `not_before` is issued before it.
    let not_before = rfc3339(wall() + Duration::from_secs(1))?;
    let (_keys, a) = issuing(fake.clone(), &format!("not_before = \"{not_before}\""))?;
    let before = token_for(&a, "alice", "alice-pw").await?;
    let r = a.review(&before, deadline()).await;
    assert!(matches!(r.outcome, Outcome::Rejected), "{r:?}");
    assert_eq!(r.detail, "issued before tokens.not_before");
    assert_eq!(rechecks(&fake), 0, "refused without asking the directory");
    tokio::time::advance(Duration::from_secs(1)).await;
    let after = token_for(&a, "alice", "alice-pw").await?;
    let r = a.review(&after, deadline()).await;
    assert!(matches!(r.outcome, Outcome::Accepted(_)), "{r:?}");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_token_from_a_node_ahead_within_the_leeway_is_accepted_at_once() -> TestResult {
    let fake = Arc::new(Fake::new());
    let (_keys, a) = issuing(fake.clone(), "")?;
    let ahead = signed_at(&a, wall() + Duration::from_secs(59)).await?;
    let r = a.review(&ahead, deadline()).await;
    assert!(matches!(r.outcome, Outcome::Accepted(_)), "{r:?}");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_token_from_a_node_further_ahead_is_refused_until_the_clock_gets_there() -> TestResult {
    let fake = Arc::new(Fake::new());
    let (_keys, a) = issuing(fake.clone(), "")?;
    let ahead = signed_at(&a, wall() + Duration::from_secs(600)).await?;
    let r = a.review(&ahead, deadline()).await;
    assert!(matches!(r.outcome, Outcome::Rejected), "{r:?}");
    assert_eq!(r.detail, "not yet valid");
    // A refusal is not cached: the same token is judged again at its next review.
    tokio::time::advance(Duration::from_secs(600 - 60)).await;
    let r = a.review(&ahead, deadline()).await;
    assert!(matches!(r.outcome, Outcome::Accepted(_)), "{r:?}");
    Ok(())
}
