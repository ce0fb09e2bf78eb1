//! The cache's files, modes, slots, lock and the expiry decision, on a real filesystem.

use super::*;

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn entry(url: &str, username: &str) -> Entry {
    Entry {
        token: Zeroizing::new("v4.public.token".into()),
        expiration_timestamp: "2030-01-01T08:00:00Z".into(),
        login_url: url.into(),
        username: username.into(),
        obtained: None,
    }
}

const URL: &str = "https://login.example.org:8444/login";

#[test]
fn the_cache_lives_under_xdg_cache_home_when_it_is_absolute() {
    let p = location(Some("/x/cache".into()), Some("/home/a".into())).unwrap();
    assert_eq!(p, Path::new("/x/cache/kube-ldap-webhook"));
}

#[test]
fn a_relative_or_empty_xdg_cache_home_is_ignored_for_home() {
    for xdg in ["relative/cache", ""] {
        let p = location(Some(xdg.into()), Some("/home/a".into())).unwrap();
        assert_eq!(p, Path::new("/home/a/.cache/kube-ldap-webhook"));
    }
}

#[test]
fn without_an_absolute_home_there_is_no_cache() {
    assert!(matches!(location(None, None), Err(CacheError::NoHome)));
    assert!(matches!(
        location(None, Some("home".into())),
        Err(CacheError::NoHome)
    ));
}

#[test]
fn a_token_valid_for_more_than_the_margin_is_checked_and_used() {
    let now = OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap();
    let later = now + REFRESH_MARGIN + time::Duration::seconds(1);
    assert_eq!(plan(later, now), Plan::Check);
}

#[test]
fn a_token_about_to_expire_or_expired_means_a_new_login() {
    let now = OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap();
    assert_eq!(plan(now + REFRESH_MARGIN, now), Plan::LogIn);
    assert_eq!(plan(now + time::Duration::minutes(1), now), Plan::LogIn);
    assert_eq!(plan(now - time::Duration::hours(1), now), Plan::LogIn);
}

#[test]
fn the_directory_and_missing_parents_are_created_for_the_owner_only() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("cache/kube-ldap-webhook");
    Cache::open(dir.clone()).unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&d.path().join("cache")), 0o700);
}

#[test]
fn a_directory_others_may_enter_is_closed_to_them() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("kube-ldap-webhook");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    Cache::open(dir.clone()).unwrap();
    assert_eq!(mode(&dir), 0o700);
}

#[test]
fn a_symlink_in_place_of_the_directory_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let elsewhere = d.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let dir = d.path().join("kube-ldap-webhook");
    std::os::unix::fs::symlink(&elsewhere, &dir).unwrap();
    assert!(matches!(Cache::open(dir), Err(CacheError::Unsafe { .. })));
}

#[test]
fn a_stored_entry_is_read_back_from_a_private_file_without_leftovers() {
    let d = tempfile::tempdir().unwrap();
    let cache = Cache::open(d.path().join("c")).unwrap();
    let slot = cache.slot(URL, "alice");
    let held = slot.lock(|| {}).unwrap();
    held.store(Kind::Session, &entry(URL, "alice")).unwrap();
    let back = held.load(Kind::Session).unwrap().unwrap();
    assert_eq!(back.token.as_str(), "v4.public.token");
    assert_eq!(mode(&slot.token), 0o600);
    let names: Vec<String> = std::fs::read_dir(d.path().join("c"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
}

#[test]
fn each_url_and_username_has_its_own_slot() {
    let d = tempfile::tempdir().unwrap();
    let cache = Cache::open(d.path().join("c")).unwrap();
    let a = cache.slot(URL, "alice");
    a.lock(|| {})
        .unwrap()
        .store(Kind::Session, &entry(URL, "alice"))
        .unwrap();
    let other_user = cache.slot(URL, "bob");
    assert!(other_user
        .lock(|| {})
        .unwrap()
        .load(Kind::Session)
        .unwrap()
        .is_none());
    let other_url = cache.slot("https://elsewhere/login", "alice");
    assert!(other_url
        .lock(|| {})
        .unwrap()
        .load(Kind::Session)
        .unwrap()
        .is_none());
}

#[test]
fn an_entry_written_for_another_url_is_ignored() {
    let d = tempfile::tempdir().unwrap();
    let cache = Cache::open(d.path().join("c")).unwrap();
    let slot = cache.slot(URL, "alice");
    let held = slot.lock(|| {}).unwrap();
    held.store(Kind::Session, &entry("https://elsewhere/login", "alice"))
        .unwrap();
    assert!(held.load(Kind::Session).unwrap().is_none());
}

#[test]
fn a_broken_cache_file_counts_as_no_token() {
    let d = tempfile::tempdir().unwrap();
    let cache = Cache::open(d.path().join("c")).unwrap();
    let slot = cache.slot(URL, "alice");
    std::fs::write(&slot.token, b"{\"token\": 12").unwrap();
    assert!(slot
        .lock(|| {})
        .unwrap()
        .load(Kind::Session)
        .unwrap()
        .is_none());
}

#[test]
fn a_symlink_in_place_of_the_token_file_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let cache = Cache::open(d.path().join("c")).unwrap();
    let slot = cache.slot(URL, "alice");
    let target = d.path().join("target");
    std::fs::write(&target, b"{}").unwrap();
    std::os::unix::fs::symlink(&target, &slot.token).unwrap();
    let held = slot.lock(|| {}).unwrap();
    assert!(matches!(
        held.load(Kind::Session),
        Err(CacheError::Unsafe { .. })
    ));
}

#[test]
fn forgetting_removes_the_entry_and_forgetting_nothing_is_fine() {
    let d = tempfile::tempdir().unwrap();
    let cache = Cache::open(d.path().join("c")).unwrap();
    let slot = cache.slot(URL, "");
    let held = slot.lock(|| {}).unwrap();
    held.forget(Kind::Session).unwrap();
    held.store(Kind::Session, &entry(URL, "carol")).unwrap();
    assert_eq!(held.load(Kind::Session).unwrap().unwrap().username, "carol");
    held.forget(Kind::Session).unwrap();
    assert!(held.load(Kind::Session).unwrap().is_none());
}

#[test]
fn forgetting_all_of_a_url_spares_other_urls_and_other_users() {
    let d = tempfile::tempdir().unwrap();
    let cache = Cache::open(d.path().join("c")).unwrap();
    let other = "https://elsewhere/login";
    let slots = [
        (cache.slot(URL, "alice"), "alice"),
        (cache.slot(URL, ""), "alice"),
        (cache.slot(URL, "bob"), "bob"),
        (cache.slot(other, "alice"), "alice"),
    ];
    for (slot, user) in &slots {
        let url = &slot.login_url;
        slot.lock(|| {})
            .unwrap()
            .store(Kind::Session, &entry(url, user))
            .unwrap();
    }
    cache.forget_all(URL, Some("alice")).unwrap();
    let left = |s: &Slot| {
        s.lock(|| {})
            .unwrap()
            .load(Kind::Session)
            .unwrap()
            .is_some()
    };
    let kept: Vec<bool> = slots.iter().map(|(s, _)| left(s)).collect();
    assert_eq!(kept, [false, false, true, true]);
    cache.forget_all(URL, None).unwrap();
    let kept: Vec<bool> = slots.iter().map(|(s, _)| left(s)).collect();
    assert_eq!(kept, [false, false, false, true]);
}

#[test]
fn the_jwt_lives_beside_the_session_in_a_private_file_of_its_own() {
    let d = tempfile::tempdir().unwrap();
    let cache = Cache::open(d.path().join("c")).unwrap();
    let slot = cache.slot(URL, "alice");
    let held = slot.lock(|| {}).unwrap();
    let mut jwt = entry(URL, "alice");
    jwt.token = Zeroizing::new("eyJhbGciOiJFUzI1NiJ9.e30.c2ln".into());
    held.store(Kind::Jwt, &jwt).unwrap();
    assert!(held.load(Kind::Session).unwrap().is_none());
    held.store(Kind::Session, &entry(URL, "alice")).unwrap();
    assert_eq!(mode(&slot.jwt), 0o600);
    assert_eq!(slot.jwt.parent(), slot.token.parent());
    let back = held.load(Kind::Jwt).unwrap().unwrap();
    assert_eq!(back.token.as_str(), "eyJhbGciOiJFUzI1NiJ9.e30.c2ln");
    held.forget(Kind::Session).unwrap();
    assert!(held.load(Kind::Jwt).unwrap().is_some());
}

#[test]
fn forgetting_all_of_a_url_forgets_its_jwts_too_even_without_a_session() {
    let d = tempfile::tempdir().unwrap();
    let cache = Cache::open(d.path().join("c")).unwrap();
    let alone = cache.slot(URL, "alice");
    alone
        .lock(|| {})
        .unwrap()
        .store(Kind::Jwt, &entry(URL, "alice"))
        .unwrap();
    let both = cache.slot(URL, "bob");
    let held = both.lock(|| {}).unwrap();
    held.store(Kind::Session, &entry(URL, "bob")).unwrap();
    held.store(Kind::Jwt, &entry(URL, "bob")).unwrap();
    drop(held);
    cache.forget_all(URL, None).unwrap();
    for slot in [&alone, &both] {
        let held = slot.lock(|| {}).unwrap();
        assert!(held.load(Kind::Jwt).unwrap().is_none());
        assert!(held.load(Kind::Session).unwrap().is_none());
    }
    let locks = std::fs::read_dir(d.path().join("c"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("lock".as_ref()))
        .count();
    assert_eq!(locks, 2, "one lock file per slot, none for a JWT file");
}

#[test]
fn a_second_run_waits_for_the_lock_of_the_first() {
    let d = tempfile::tempdir().unwrap();
    let cache = Cache::open(d.path().join("c")).unwrap();
    let slot = cache.slot(URL, "alice");
    let first = slot.lock(|| {}).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        let second = s.spawn(|| {
            let other = cache.slot(URL, "alice");
            let held = other.lock(|| tx.send("waiting").unwrap()).unwrap();
            held.load(Kind::Session).unwrap().map(|e| e.username)
        });
        assert_eq!(rx.recv().unwrap(), "waiting");
        first.store(Kind::Session, &entry(URL, "alice")).unwrap();
        drop(first);
        assert_eq!(second.join().unwrap().as_deref(), Some("alice"));
    });
}

#[test]
fn a_socket_in_place_of_the_token_file_is_refused_by_name() {
    let d = tempfile::tempdir().unwrap();
    let cache = Cache::open(d.path().join("c")).unwrap();
    let slot = cache.slot(URL, "alice");
    let _socket = std::os::unix::net::UnixListener::bind(&slot.token).unwrap();
    let held = slot.lock(|| {}).unwrap();
    let Err(refused) = held.load(Kind::Session) else {
        panic!("a socket was read as a token file");
    };
    let refused = refused.to_string();
    assert!(refused.contains("is a socket, not a file"), "{refused}");
}
