//! `POST /token`'s policy, [`Authenticator::exchange`], on tokio's paused clock: the review
//! of a session without the answer cache, so that the account is re-read at every
//! exchange, no stale answer stands in for it, and only a session is exchanged.

use super::admit::{issuing, token_for};
use super::*;

/// An authenticator issuing sessions, and alice's session, accepted by a review.
async fn reviewed_session() -> TestResult<(
    Arc<Fake>,
    tempfile::TempDir,
    Arc<Authenticator<Fake>>,
    String,
)> {
    let fake = Arc::new(Fake::new());
    let (keys, a) = issuing(fake.clone(), "")?;
    let session = token_for(&a, "alice", "alice-pw").await?;
    let r = a.review(&session, deadline()).await;
    assert!(matches!(r.outcome, Outcome::Accepted(_)), "{r:?}");
    Ok((fake, keys, a, session))
}

#[tokio::test(start_paused = true)]
async fn an_exchange_asks_the_directory_though_the_sessions_answer_is_cached() -> TestResult {
    let (fake, _keys, a, session) = reviewed_session().await?;
    assert_eq!(a.review(&session, deadline()).await.source, Source::Cache);
    let before = Fake::count(&fake.rechecks);
    let (r, expires) = a.exchange(&session, deadline()).await;
    assert!(matches!(r.outcome, Outcome::Accepted(_)), "{r:?}");
    assert_eq!(r.source, Source::Directory);
    assert_eq!(Fake::count(&fake.rechecks), before + 1);
    let left = expires.and_then(|e| e.duration_since(crate::clock::wall()).ok());
    assert!(
        left.is_some_and(|l| l <= Duration::from_secs(8 * 3600)),
        "{left:?}"
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn an_outage_refuses_an_exchange_where_a_review_gets_a_stale_answer() -> TestResult {
    let (fake, _keys, a, session) = reviewed_session().await?;
    fake.set(Mode::Outage);
    // Past `cache.ttl` (2m), within `cache.stale_ttl` (1h).
    tokio::time::advance(Duration::from_secs(600)).await;
    let r = a.review(&session, deadline()).await;
    assert!(matches!(r.source, Source::Stale(_)), "{r:?}");
    let (r, _) = a.exchange(&session, deadline()).await;
    assert!(matches!(r.outcome, Outcome::Unavailable), "{r:?}");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_basic_token_is_no_session_and_costs_no_directory_operation() -> TestResult {
    let fake = Arc::new(Fake::new());
    let (_keys, a) = issuing(fake.clone(), "")?;
    let (r, expires) = a.exchange(&token("alice", "alice-pw"), deadline()).await;
    assert!(matches!(r.outcome, Outcome::Rejected), "{r:?}");
    assert_eq!((r.source, expires), (Source::Local, None));
    assert_eq!(Fake::count(&fake.finds) + Fake::count(&fake.verifies), 0);
    Ok(())
}
