//! Allocations per cache hit: a counting global allocator (this bench binary only, never
//! the daemon) and the daemon's own code run under it.
//!
//! The daemon binary cannot be counted from outside, so this bench binary runs it itself:
//! started as the daemon's wrapper with `KLW_BENCH_ROLE=counting-daemon`, it calls the
//! library's `serve` on the config the tests' harness wrote, counting every allocation of
//! the process once the role is known, and tells the totals to whoever connects to
//! `KLW_BENCH_ALLOC_PORT`. Other roles (the load generator, the baseline server) pay one
//! relaxed load per allocation and count nothing. Self-contained, so that other bench
//! binaries can include it by path.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

pub const ROLE: &str = "counting-daemon";
pub const PORT_ENV: &str = "KLW_BENCH_ALLOC_PORT";

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

/// The system allocator, counting allocations (and reallocations, which may move) and their
/// bytes while [`COUNTING`] is on.
pub struct Counting;

impl Counting {
    fn count(size: usize) {
        if COUNTING.load(Relaxed) {
            ALLOCATIONS.fetch_add(1, Relaxed);
            BYTES.fetch_add(size as u64, Relaxed);
        }
    }
}

// SAFETY: every call is passed on to the system allocator unchanged; the counters are atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::count(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::count(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::count(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

/// Allocations and bytes allocated so far.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    pub allocations: u64,
    pub bytes: u64,
}

impl Counts {
    /// Per event, for `events` events between `self` and the later `after`.
    pub fn per(self, after: Counts, events: u64) -> (f64, f64) {
        let n = events.max(1) as f64;
        (
            after.allocations.saturating_sub(self.allocations) as f64 / n,
            after.bytes.saturating_sub(self.bytes) as f64 / n,
        )
    }
}

/// Whether this process is the counting daemon.
pub fn is_counting_daemon() -> bool {
    std::env::var("KLW_BENCH_ROLE").as_deref() == Ok(ROLE)
}

/// The counting daemon's `main`: run as the daemon's wrapper, so its arguments are
/// `<daemon binary> serve --config <path>`; serves that config with the library's `serve`.
pub fn counting_daemon_main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let Some(config) = args
        .iter()
        .position(|a| a == "--config")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
    else {
        eprintln!("counting daemon: no --config in {args:?}");
        return std::process::ExitCode::FAILURE;
    };
    let port = std::env::var(PORT_ENV)
        .ok()
        .and_then(|p| p.parse::<u16>().ok());
    let Some(Ok(listener)) = port.map(|p| TcpListener::bind(("127.0.0.1", p))) else {
        eprintln!("counting daemon: cannot listen on {PORT_ENV}");
        return std::process::ExitCode::FAILURE;
    };
    std::thread::spawn(move || tell_counts(listener));
    COUNTING.store(true, Relaxed);
    match kube_ldap_webhook::serve(&config) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("counting daemon: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Answers every connection with `<allocations> <bytes>\n`, read before anything is written.
fn tell_counts(listener: TcpListener) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let (a, b) = (ALLOCATIONS.load(Relaxed), BYTES.load(Relaxed));
        let _ = writeln!(stream, "{a} {b}");
    }
}

/// The counting daemon's totals, asked on `port`.
pub fn counts(port: u16) -> Option<Counts> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let mut it = text.split_whitespace().map(|v| v.parse::<u64>().ok());
    Some(Counts {
        allocations: it.next()??,
        bytes: it.next()??,
    })
}
