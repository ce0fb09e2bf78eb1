//! Loopback ports for the servers a test starts.
//!
//! Asking the kernel for port 0 and closing the socket hands out a port from the ephemeral
//! range, where two things go wrong on a busy run: two tests of one binary may be told the
//! same port, and any outgoing connection (a daemon to slapd, a client to a daemon) may take
//! it as its source port before the server binds it. Both were seen in CI as "Address already
//! in use", and worse, as a test talking to another test's server. So ports come from below
//! the ephemeral range, where the kernel never picks source ports, each handed out once per
//! process, and only after a bind shows it free right now.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// Where the handed-out ports start: inside the range, at an offset that differs between
/// processes (so two test binaries or a test beside a bench rarely try the same ports).
fn range() -> &'static (u16, u16, AtomicU32) {
    static RANGE: OnceLock<(u16, u16, AtomicU32)> = OnceLock::new();
    RANGE.get_or_init(|| {
        let (low, high) = outside_ephemeral();
        let span = u32::from(high - low);
        let seed = std::process::id()
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
        (low, high, AtomicU32::new(seed % span))
    })
}

/// A range of ports the kernel does not hand out as source ports.
fn outside_ephemeral() -> (u16, u16) {
    let (eph_low, eph_high) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999));
    if eph_low >= 12_000 {
        (10_000, eph_low)
    } else {
        assert!(
            eph_high <= 63_000,
            "no room outside the ephemeral port range {eph_low}-{eph_high}"
        );
        (eph_high + 1, u16::MAX)
    }
}

/// A loopback port that no other caller in this process has been given and that nothing
/// listens on now.
pub fn free_port() -> u16 {
    let (low, high, next) = range();
    let span = u32::from(high - low);
    for _ in 0..span {
        let port = low + (next.fetch_add(1, Ordering::Relaxed) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {low}-{high}");
}
