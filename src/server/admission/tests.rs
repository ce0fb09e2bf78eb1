use super::*;

fn limits(handshakes: usize, per_source: usize) -> Limits {
    Limits {
        handshakes,
        handshakes_per_source: per_source,
        verified: 2,
        verified_per_source: 1,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn admission() -> Arc<Admission> {
    Admission::new(Gauge::default(), Gauge::default())
}

fn is_evicted(slot: &mut HandshakeSlot) -> bool {
    slot.evict.fired()
}

#[test]
fn a_full_source_replaces_its_own_oldest_handshake() {
    let a = admission();
    let l = limits(10, 2);
    let mut first = a.handshake(ip("10.0.0.1"), l);
    let mut second = a.handshake(ip("10.0.0.1"), l);
    let mut other = a.handshake(ip("10.0.0.2"), l);
    let mut third = a.handshake(ip("10.0.0.1"), l);
    assert!(is_evicted(&mut first));
    assert!(!is_evicted(&mut second));
    assert!(!is_evicted(&mut other));
    assert!(!is_evicted(&mut third));
}

#[test]
fn a_full_table_replaces_the_oldest_of_the_heaviest_source() {
    let a = admission();
    let l = limits(3, 3);
    let mut quiet = a.handshake(ip("10.0.0.9"), l);
    let mut loud1 = a.handshake(ip("10.0.0.1"), l);
    let mut loud2 = a.handshake(ip("10.0.0.1"), l);
    let mut newcomer = a.handshake(ip("10.0.0.7"), l);
    assert!(
        !is_evicted(&mut quiet),
        "the quiet address keeps its one handshake"
    );
    assert!(is_evicted(&mut loud1));
    assert!(!is_evicted(&mut loud2));
    assert!(!is_evicted(&mut newcomer));
}

#[test]
fn an_evicted_handshake_cannot_become_verified() {
    let a = admission();
    let l = limits(1, 1);
    let first = a.handshake(ip("10.0.0.1"), l);
    let _second = a.handshake(ip("10.0.0.1"), l);
    assert_eq!(first.verified(l).err(), Some(NoPlace::Evicted));
}

#[test]
fn verified_budget_is_capped_per_source_and_in_all_and_freed_on_drop() {
    let a = admission();
    let l = limits(10, 10);
    let v1 = a.handshake(ip("10.0.0.1"), l).verified(l).unwrap();
    let same = a.handshake(ip("10.0.0.1"), l).verified(l);
    assert_eq!(same.err(), Some(NoPlace::Limit), "per source");
    let v2 = a.handshake(ip("10.0.0.2"), l).verified(l).unwrap();
    let third = a.handshake(ip("10.0.0.3"), l).verified(l);
    assert_eq!(third.err(), Some(NoPlace::Limit), "in all");
    drop(v1);
    assert!(a.handshake(ip("10.0.0.1"), l).verified(l).is_ok());
    drop(v2);
}

#[test]
fn handshake_slots_leave_the_table_when_dropped() {
    let a = admission();
    let l = limits(2, 2);
    drop(a.handshake(ip("10.0.0.1"), l));
    drop(a.handshake(ip("10.0.0.1"), l));
    let mut x = a.handshake(ip("10.0.0.1"), l);
    let mut y = a.handshake(ip("10.0.0.1"), l);
    assert!(!is_evicted(&mut x) && !is_evicted(&mut y));
    assert_eq!(a.lock().handshake_count, 2);
}

#[test]
fn a_pending_seat_takes_its_verified_place_at_the_first_request_only() {
    let a = admission();
    let l = limits(10, 10);
    let seat = Seat::new(Place::Pending(a.handshake(ip("10.0.0.1"), l)), false);
    assert!(!seat.evict.fired());
    assert_eq!(a.lock().verified_count, 0, "no place before a request");
    drop(seat.admit(l).unwrap());
    drop(seat.admit(l).unwrap());
    assert_eq!(
        a.lock().verified_count,
        1,
        "one place for every request after"
    );
    assert_eq!(a.lock().handshake_count, 0);
    drop(seat);
    assert_eq!(a.lock().verified_count, 0);
}

#[test]
fn a_pending_seat_replaced_before_its_first_request_gets_none() {
    let a = admission();
    let l = limits(1, 1);
    let seat = Seat::new(Place::Pending(a.handshake(ip("10.0.0.1"), l)), true);
    let _newer = a.handshake(ip("10.0.0.1"), l);
    assert!(seat.evict.fired());
    assert_eq!(seat.admit(l).err(), Some(NoPlace::Evicted));
}

#[test]
fn a_rejoining_seat_is_replaceable_again_once_its_last_request_ends() {
    let a = admission();
    let l = limits(1, 1);
    let seat = Seat::new(Place::Pending(a.handshake(ip("10.0.0.1"), l)), true);
    let first = seat.admit(l).unwrap();
    let second = seat.admit(l).unwrap();
    assert_eq!(a.lock().handshake_count, 0);
    assert_eq!(a.lock().verified_count, 1);
    let _busy_newcomer = a.handshake(ip("10.0.0.1"), l);
    drop(first);
    assert_eq!(a.lock().verified_count, 1, "a request is still in flight");
    assert!(!seat.evict.fired(), "nobody replaces a busy connection");
    drop(second);
    assert_eq!(a.lock().verified_count, 0);
    assert!(!seat.evict.fired(), "it rejoined as the newest");
    let _newcomer = a.handshake(ip("10.0.0.1"), l);
    assert!(seat.evict.fired(), "the idle connection was replaced");
    assert_eq!(seat.admit(l).err(), Some(NoPlace::Evicted));
}

#[test]
fn a_review_port_seat_keeps_its_verified_place_between_requests() {
    let a = admission();
    let l = limits(1, 1);
    let slot = a.handshake(ip("10.0.0.1"), l).verified(l).unwrap();
    let seat = Seat::new(Place::Verified(slot), false);
    drop(seat.admit(l).unwrap());
    let _newcomer = a.handshake(ip("10.0.0.1"), l);
    assert!(!seat.evict.fired());
    assert_eq!(a.lock().verified_count, 1);
}

#[test]
fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
    assert_eq!(source_of(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
    assert_eq!(source_of(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
    assert_eq!(source_of(ip("10.0.0.1")), ip("10.0.0.1"));
}
