//! Who may hold a connection on the review listener, in two budgets.
//!
//! *Handshakes*: TCP accepted, no verified client certificate yet. Anyone who can reach the
//! port lands here, so this budget never refuses a newcomer: when it is full, the newcomer
//! replaces the oldest handshake of its own address (at `max_handshakes_per_source`), or
//! else the oldest of the address holding the most. A client that finishes its handshake in
//! milliseconds always gets through; silent sockets are recycled. (kube-apiserver usually
//! connects from 127.0.0.1, the address an attacker on the node has too, so a per-address
//! cap that refused would lock it out.)
//!
//! *Verified*: a client certificate from `client_ca_file`. Only kube-apiserver gets here;
//! beyond `max_connections` (or `max_connections_per_source`) the connection is closed.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::oneshot;

use crate::config::Server;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    pub handshakes: usize,
    pub handshakes_per_source: usize,
    pub verified: usize,
    pub verified_per_source: usize,
}

impl Limits {
    pub(crate) fn of(s: &Server) -> Limits {
        Limits {
            handshakes: s.max_handshakes,
            handshakes_per_source: s.max_handshakes_per_source,
            verified: s.max_connections,
            verified_per_source: s.max_connections_per_source,
        }
    }
}

/// What limits apply to: an IPv4 address, or an IPv6 /64 (one host usually holds a whole
/// /64, so counting single IPv6 addresses would count nothing).
pub(crate) fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

struct Pending {
    id: u64,
    evict: oneshot::Sender<()>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    /// Per source, oldest first.
    handshakes: HashMap<IpAddr, VecDeque<Pending>>,
    handshake_count: usize,
    verified: HashMap<IpAddr, usize>,
    verified_count: usize,
}

impl Table {
    /// Evicts the oldest handshake of `source`.
    fn evict_oldest_of(&mut self, source: IpAddr) {
        let Some(queue) = self.handshakes.get_mut(&source) else {
            return;
        };
        if let Some(victim) = queue.pop_front() {
            self.handshake_count -= 1;
            // The victim's task may have ended already; then there is nothing to tell.
            let _ = victim.evict.send(());
        }
        if queue.is_empty() {
            self.handshakes.remove(&source);
        }
    }

    /// The address holding the most handshakes; among equals, the one with the oldest.
    fn heaviest_source(&self) -> Option<IpAddr> {
        self.handshakes
            .iter()
            .filter_map(|(s, q)| q.front().map(|p| (*s, q.len(), p.id)))
            .max_by(|a, b| a.1.cmp(&b.1).then(b.2.cmp(&a.2)))
            .map(|(s, _, _)| s)
    }

    fn remove_handshake(&mut self, source: IpAddr, id: u64) -> bool {
        let Some(queue) = self.handshakes.get_mut(&source) else {
            return false;
        };
        let Some(i) = queue.iter().position(|p| p.id == id) else {
            return false;
        };
        queue.remove(i);
        self.handshake_count -= 1;
        if queue.is_empty() {
            self.handshakes.remove(&source);
        }
        true
    }
}

/// The refusal of a connection whose handshake succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Replaced by a newer connection while its handshake ran.
    Evicted,
    /// The verified budget (in all or of its address) is spent.
    Limit,
}

pub(crate) struct Admission {
    table: Mutex<Table>,
    handshake_gauge: Gauge,
    verified_gauge: Gauge,
}

impl Admission {
    pub(crate) fn new(handshake_gauge: Gauge, verified_gauge: Gauge) -> Arc<Admission> {
        Arc::new(Admission {
            table: Mutex::new(Table::default()),
            handshake_gauge,
            verified_gauge,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // No code below panics while holding the lock; a poisoned table is still consistent.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, t: &Table) {
        self.handshake_gauge.set(t.handshake_count as i64);
        self.verified_gauge.set(t.verified_count as i64);
    }

    /// Admits a new connection to the handshake budget, evicting others to make room.
    pub(crate) fn handshake(self: &Arc<Self>, peer: IpAddr, limits: Limits) -> HandshakeSlot {
        let source = source_of(peer);
        let (tx, rx) = oneshot::channel();
        let mut t = self.lock();
        while t.handshakes.get(&source).map_or(0, VecDeque::len) >= limits.handshakes_per_source {
            t.evict_oldest_of(source);
        }
        while t.handshake_count >= limits.handshakes {
            let Some(heaviest) = t.heaviest_source() else {
                break;
            };
            t.evict_oldest_of(heaviest);
        }
        let id = t.next_id;
        t.next_id += 1;
        t.handshakes
            .entry(source)
            .or_default()
            .push_back(Pending { id, evict: tx });
        t.handshake_count += 1;
        self.publish(&t);
        drop(t);
        HandshakeSlot {
            admission: self.clone(),
            source,
            id,
            evicted: rx,
        }
    }
}

/// A place in the handshake budget; left when dropped.
pub(crate) struct HandshakeSlot {
    admission: Arc<Admission>,
    source: IpAddr,
    id: u64,
    evicted: oneshot::Receiver<()>,
}

impl HandshakeSlot {
    /// The eviction notice, for a connection that waits for it elsewhere than in
    /// [`HandshakeSlot::evicted`] (which then no longer resolves for eviction).
    fn take_eviction(&mut self) -> oneshot::Receiver<()> {
        std::mem::replace(&mut self.evicted, oneshot::channel().1)
    }

    /// Resolves when a newer connection took this one's place.
    pub(crate) async fn evicted(&mut self) {
        // A dropped sender means the entry is gone too: the same verdict.
        let _ = (&mut self.evicted).await;
    }

    /// Moves a connection whose client certificate was verified into the verified budget.
    pub(crate) fn verified(self, limits: Limits) -> Result<VerifiedSlot, Refused> {
        let admission = self.admission.clone();
        let mut t = admission.lock();
        if !t.remove_handshake(self.source, self.id) {
            return Err(Refused::Evicted);
        }
        let from_source = t.verified.get(&self.source).copied().unwrap_or(0);
        let result =
            if t.verified_count >= limits.verified || from_source >= limits.verified_per_source {
                Err(Refused::Limit)
            } else {
                t.verified_count += 1;
                *t.verified.entry(self.source).or_default() += 1;
                Ok(VerifiedSlot {
                    admission: admission.clone(),
                    source: self.source,
                })
            };
        admission.publish(&t);
        result
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        let mut t = self.admission.lock();
        if t.remove_handshake(self.source, self.id) {
            self.admission.publish(&t);
        }
    }
}

/// Where a connection stands after its TLS handshake.
pub(crate) enum Place {
    /// Still replaceable (the login port, until its first request).
    Pending(HandshakeSlot),
    Verified(VerifiedSlot),
}

enum Held {
    Pending(HandshakeSlot),
    Verified(VerifiedSlot),
    Gone,
}

/// A connection's place, moved into the verified budget at its first request: on the login
/// port anyone finishes the handshake, so a connection that never asks for anything must
/// stay replaceable, as a silent TCP connection is.
pub(crate) struct Seat(Mutex<Held>);

impl Seat {
    /// The seat and, while it is pending, the notice that a newer connection replaced it.
    pub(crate) fn new(place: Place) -> (Arc<Seat>, Option<oneshot::Receiver<()>>) {
        let (held, eviction) = match place {
            Place::Pending(mut slot) => {
                let rx = slot.take_eviction();
                (Held::Pending(slot), Some(rx))
            }
            Place::Verified(v) => (Held::Verified(v), None),
        };
        (Arc::new(Seat(Mutex::new(held))), eviction)
    }

    /// Before each request: a verified place, taken at the first one if need be.
    pub(crate) fn admit(&self, limits: Limits) -> Result<(), Refused> {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match std::mem::replace(&mut *held, Held::Gone) {
            Held::Verified(v) => {
                *held = Held::Verified(v);
                Ok(())
            }
            Held::Pending(slot) => {
                let v = slot.verified(limits)?;
                *held = Held::Verified(v);
                Ok(())
            }
            Held::Gone => Err(Refused::Limit),
        }
    }
}

/// A place in the verified budget; left when dropped.
pub(crate) struct VerifiedSlot {
    admission: Arc<Admission>,
    source: IpAddr,
}

impl Drop for VerifiedSlot {
    fn drop(&mut self) {
        let mut t = self.admission.lock();
        t.verified_count -= 1;
        if let Some(n) = t.verified.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                t.verified.remove(&self.source);
            }
        }
        self.admission.publish(&t);
    }
}

#[cfg(test)]
mod tests {
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
        matches!(slot.evicted.try_recv(), Ok(()))
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
        assert_eq!(first.verified(l).err(), Some(Refused::Evicted));
    }

    #[test]
    fn verified_budget_is_capped_per_source_and_in_all_and_freed_on_drop() {
        let a = admission();
        let l = limits(10, 10);
        let v1 = a.handshake(ip("10.0.0.1"), l).verified(l).unwrap();
        let same = a.handshake(ip("10.0.0.1"), l).verified(l);
        assert_eq!(same.err(), Some(Refused::Limit), "per source");
        let v2 = a.handshake(ip("10.0.0.2"), l).verified(l).unwrap();
        let third = a.handshake(ip("10.0.0.3"), l).verified(l);
        assert_eq!(third.err(), Some(Refused::Limit), "in all");
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
        let (seat, mut eviction) = Seat::new(Place::Pending(a.handshake(ip("10.0.0.1"), l)));
        assert!(matches!(
            eviction.as_mut().unwrap().try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        ));
        assert_eq!(a.lock().verified_count, 0, "no place before a request");
        assert!(seat.admit(l).is_ok());
        assert!(seat.admit(l).is_ok(), "one place for every request after");
        assert_eq!(a.lock().verified_count, 1);
        assert_eq!(a.lock().handshake_count, 0);
        drop(seat);
        assert_eq!(a.lock().verified_count, 0);
    }

    #[test]
    fn a_pending_seat_replaced_before_its_first_request_gets_none() {
        let a = admission();
        let l = limits(1, 1);
        let (seat, mut eviction) = Seat::new(Place::Pending(a.handshake(ip("10.0.0.1"), l)));
        let _newer = a.handshake(ip("10.0.0.1"), l);
        assert!(matches!(eviction.as_mut().unwrap().try_recv(), Ok(())));
        assert_eq!(seat.admit(l), Err(Refused::Evicted));
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(source_of(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(source_of(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
        assert_eq!(source_of(ip("10.0.0.1")), ip("10.0.0.1"));
    }
}
