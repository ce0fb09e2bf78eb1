//! Who may hold a connection on a listener, in two budgets.
//!
//! *Replaceable* (`max_handshakes`, `max_handshakes_per_source`): TCP accepted, no verified
//! client certificate yet; on the login port also every connection with no request in
//! flight (anyone finishes that port's handshake, so an idle login connection is worth no
//! more than a silent socket). Anyone who can reach the port lands here, so this budget
//! never refuses a newcomer: when it is full, the newcomer replaces the oldest entry of its
//! own address (at `max_handshakes_per_source`), or else the oldest of the address holding
//! the most. A client that finishes its handshake in milliseconds always gets through;
//! silent sockets and idle connections are recycled. (kube-apiserver usually connects from
//! 127.0.0.1, the address an attacker on the node has too, so a per-address cap that
//! refused would lock it out.)
//!
//! *Verified* (`max_connections`, `max_connections_per_source`): on the review port a
//! client certificate from `client_ca_file`, so only kube-apiserver gets here; on the login
//! port a connection while it has a request in flight. Beyond the caps the connection is
//! closed.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;

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

/// The notice that a newer connection took a connection's replaceable place. Final: an
/// evicted connection is closed, so the flag is never cleared.
#[derive(Default)]
pub(crate) struct Eviction {
    fired: AtomicBool,
    notify: Notify,
}

impl Eviction {
    fn fire(&self) {
        self.fired.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }

    /// Resolves once the connection was replaced.
    pub(crate) async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the flag is read: a fire() in between is not missed.
            notified.as_mut().enable();
            if self.fired() {
                return;
            }
            notified.await;
        }
    }
}

struct Pending {
    id: u64,
    evict: Arc<Eviction>,
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
            victim.evict.fire();
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

/// Why a connection whose handshake succeeded found no verified place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoPlace {
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

    /// Admits a new connection to the replaceable budget, evicting others to make room.
    pub(crate) fn handshake(self: &Arc<Self>, peer: IpAddr, limits: Limits) -> HandshakeSlot {
        self.join(source_of(peer), limits, Arc::default())
    }

    /// Enters `source`'s connection, known by `evict`, as the newest replaceable one.
    fn join(
        self: &Arc<Self>,
        source: IpAddr,
        limits: Limits,
        evict: Arc<Eviction>,
    ) -> HandshakeSlot {
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
        t.handshakes.entry(source).or_default().push_back(Pending {
            id,
            evict: evict.clone(),
        });
        t.handshake_count += 1;
        self.publish(&t);
        drop(t);
        HandshakeSlot {
            admission: self.clone(),
            source,
            id,
            evict,
        }
    }
}

/// A place in the replaceable budget; left when dropped.
pub(crate) struct HandshakeSlot {
    admission: Arc<Admission>,
    source: IpAddr,
    id: u64,
    evict: Arc<Eviction>,
}

impl HandshakeSlot {
    /// Resolves when a newer connection took this one's place.
    pub(crate) async fn evicted(&self) {
        self.evict.wait().await;
    }

    /// Moves a connection whose client certificate was verified (or, on the login port,
    /// whose request arrived) into the verified budget.
    pub(crate) fn verified(self, limits: Limits) -> Result<VerifiedSlot, NoPlace> {
        let admission = self.admission.clone();
        let mut t = admission.lock();
        if !t.remove_handshake(self.source, self.id) {
            return Err(NoPlace::Evicted);
        }
        let from_source = t.verified.get(&self.source).copied().unwrap_or(0);
        let result =
            if t.verified_count >= limits.verified || from_source >= limits.verified_per_source {
                Err(NoPlace::Limit)
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
    /// Still replaceable (the login port).
    Pending(HandshakeSlot),
    Verified(VerifiedSlot),
}

enum Held {
    Pending(HandshakeSlot),
    Verified(VerifiedSlot),
    Gone,
}

struct SeatState {
    held: Held,
    in_flight: usize,
}

/// A connection's place while it serves requests. A verified place is taken at a request
/// if need be; on the login port (`rejoin`) it is given back when the last request in
/// flight ends, and the connection is replaceable again: anyone finishes that port's
/// handshake and one cheap request must not buy a place for good.
pub(crate) struct Seat {
    state: Mutex<SeatState>,
    evict: Arc<Eviction>,
    rejoin: bool,
}

impl Seat {
    pub(crate) fn new(place: Place, rejoin: bool) -> Arc<Seat> {
        let (held, evict) = match place {
            Place::Pending(slot) => {
                let evict = slot.evict.clone();
                (Held::Pending(slot), evict)
            }
            Place::Verified(v) => (Held::Verified(v), Arc::default()),
        };
        Arc::new(Seat {
            state: Mutex::new(SeatState { held, in_flight: 0 }),
            evict,
            rejoin,
        })
    }

    fn lock(&self) -> MutexGuard<'_, SeatState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves when a newer connection replaced this one while it was replaceable.
    pub(crate) async fn evicted(&self) {
        self.evict.wait().await;
    }

    /// Before each request: a verified place, held until the returned guard is dropped.
    pub(crate) fn admit(self: &Arc<Self>, limits: Limits) -> Result<SeatGuard, NoPlace> {
        let mut st = self.lock();
        match std::mem::replace(&mut st.held, Held::Gone) {
            Held::Verified(v) => st.held = Held::Verified(v),
            Held::Pending(slot) => st.held = Held::Verified(slot.verified(limits)?),
            Held::Gone => return Err(NoPlace::Limit),
        }
        st.in_flight += 1;
        Ok(SeatGuard {
            seat: self.clone(),
            limits,
        })
    }

    /// After a request: the last one in flight gives a login connection's place back.
    fn release(&self, limits: Limits) {
        let mut st = self.lock();
        st.in_flight -= 1;
        if !self.rejoin || st.in_flight > 0 {
            return;
        }
        if let Held::Verified(v) = std::mem::replace(&mut st.held, Held::Gone) {
            let (admission, source) = (v.admission.clone(), v.source);
            // The verified place goes first: joining may evict, never under two locks.
            drop(v);
            st.held = Held::Pending(admission.join(source, limits, self.evict.clone()));
        }
    }
}

/// A request's hold on its connection's verified place.
pub(crate) struct SeatGuard {
    seat: Arc<Seat>,
    limits: Limits,
}

impl Drop for SeatGuard {
    fn drop(&mut self) {
        self.seat.release(self.limits);
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
mod tests;
