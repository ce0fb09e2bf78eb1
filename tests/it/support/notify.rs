//! systemd's side of sd_notify: a NOTIFY_SOCKET the test owns.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::PATIENCE;

const PING: &str = "WATCHDOG=1";

/// Every datagram the daemon sends to NOTIFY_SOCKET, in order.
pub struct Notify {
    sock: UnixDatagram,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Notify {
    pub fn new() -> Notify {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        Notify {
            sock,
            path,
            _dir: dir,
        }
    }

    /// The value of NOTIFY_SOCKET.
    pub fn path(&self) -> String {
        self.path.display().to_string()
    }

    /// The next message, if one arrives before `deadline`.
    fn recv_by(&self, deadline: Instant) -> Option<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        self.sock.set_read_timeout(Some(left)).unwrap();
        let mut buf = [0u8; 4096];
        let n = self.sock.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// The next message that is not a watchdog ping, counting the pings on the way.
    pub fn next(&self, pings: &mut usize) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let msg = self
                .recv_by(deadline)
                .unwrap_or_else(|| panic!("no sd_notify message within {PATIENCE:?}"));
            if msg.trim() != PING {
                return msg;
            }
            *pings += 1;
        }
    }

    /// Waits until `n` watchdog pings have arrived in all; any other message is a failure.
    pub fn pings(&self, n: usize, pings: &mut usize) {
        let deadline = Instant::now() + PATIENCE;
        while *pings < n {
            let msg = self
                .recv_by(deadline)
                .unwrap_or_else(|| panic!("only {pings} {PING} pings in {PATIENCE:?}"));
            assert_eq!(msg.trim(), PING, "only pings were due");
            *pings += 1;
        }
    }

    /// Messages until one contains `needle`, that one included.
    pub fn until(&self, needle: &str) -> Vec<String> {
        let deadline = Instant::now() + PATIENCE;
        let mut seen = vec![];
        loop {
            let msg = self
                .recv_by(deadline)
                .unwrap_or_else(|| panic!("no {needle:?} in {seen:?}"));
            let done = msg.contains(needle);
            seen.push(msg);
            if done {
                return seen;
            }
        }
    }

    /// Every message that arrives within `within`.
    pub fn drain(&self, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        std::iter::from_fn(|| self.recv_by(deadline)).collect()
    }
}

/// How many of `msgs` are watchdog pings.
pub fn pings_in(msgs: &[String]) -> usize {
    msgs.iter().filter(|m| m.trim() == PING).count()
}
