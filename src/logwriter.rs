//! The text log's writer: lines are appended to a shared buffer, and a thread of its own
//! writes what gathered to stderr in one write(2), at most every [`GATHER`].
//!
//! A review's log line then costs its formatting and a copy under a lock: no allocation
//! (the thread and the writers swap two buffers that keep their capacity) and no system
//! call, but for waking the thread when a line lands in an empty buffer, once per batch.
//! A handing-over queue per line (tracing-appender's) allocates a line and wakes its thread
//! for nearly every review under load, which is what this module exists to avoid.
//!
//! Not lossy: at [`LIMIT`] bytes waiting, a writer waits for the thread, so a log that
//! cannot keep up slows the reviews down, as the synchronous stderr did, and the audit trail
//! keeps every line, in order. What is buffered is written when the [`LogGuard`] drops (at
//! the end of `serve`); a process killed outright loses at most the last [`GATHER`].

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the thread lets lines gather before it writes them.
pub(crate) const GATHER: Duration = Duration::from_millis(10);
/// Bytes waiting at most (a review's line is about 250 bytes: about 4,000 lines).
pub(crate) const LIMIT: usize = 1024 * 1024;
/// Written at once from this much on, without waiting out [`GATHER`].
const HIGH_WATER: usize = LIMIT / 4;

struct State {
    buf: Vec<u8>,
    closed: bool,
    /// Writers waiting for room: then the thread writes at once.
    waiting: usize,
}

struct Shared {
    state: Mutex<State>,
    /// The thread waits here for a first line.
    lines: Condvar,
    /// Writers wait here while [`LIMIT`] bytes are waiting.
    space: Condvar,
    limit: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A writer that panicked mid-copy leaves at worst a partial line.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The writer handed to the log layer: cheap to clone, every clone appends to one buffer.
pub(crate) struct LogWriter<W: Write + Send + 'static> {
    shared: Arc<Shared>,
    /// Where lines go once the guard dropped (nobody flushes the buffer then).
    late: Arc<Mutex<W>>,
}

impl<W: Write + Send + 'static> Clone for LogWriter<W> {
    fn clone(&self) -> Self {
        LogWriter {
            shared: self.shared.clone(),
            late: self.late.clone(),
        }
    }
}

/// Writes what is buffered, and stops the thread, when dropped.
#[must_use = "dropping the guard stops the log writer"]
pub(crate) struct LogGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A writer into `sink` (stderr in the daemon) and the guard of its thread.
pub(crate) fn spawn<W>(sink: W, limit: usize) -> io::Result<(LogWriter<W>, LogGuard)>
where
    W: Write + Send + 'static,
{
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            buf: Vec::new(),
            closed: false,
            waiting: 0,
        }),
        lines: Condvar::new(),
        space: Condvar::new(),
        limit,
    });
    let late = Arc::new(Mutex::new(sink));
    let thread = {
        let (shared, sink) = (shared.clone(), late.clone());
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || drain(&shared, &sink))?
    };
    let guard = LogGuard {
        shared: shared.clone(),
        thread: Some(thread),
    };
    Ok((LogWriter { shared, late }, guard))
}

/// The thread: waits for a first line, lets more gather, writes them all, again.
fn drain<W: Write>(shared: &Shared, sink: &Mutex<W>) {
    let mut out = Vec::new();
    loop {
        let mut st = shared.lock();
        while st.buf.is_empty() && !st.closed {
            st = shared
                .lines
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if st.buf.is_empty() {
            return;
        }
        if !st.closed && st.waiting == 0 && st.buf.len() < HIGH_WATER.min(shared.limit) {
            drop(st);
            std::thread::sleep(GATHER);
            st = shared.lock();
        }
        std::mem::swap(&mut st.buf, &mut out);
        drop(st);
        shared.space.notify_all();
        let mut sink = sink.lock().unwrap_or_else(PoisonError::into_inner);
        // Nowhere to report a failing stderr: the lines are dropped, as eprintln! would.
        let _ = sink.write_all(&out).and_then(|()| sink.flush());
        out.clear();
    }
}

impl<W: Write + Send + 'static> Write for LogWriter<W> {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let shared = &self.shared;
        let mut st = shared.lock();
        while !st.closed && !st.buf.is_empty() && st.buf.len() + line.len() > shared.limit {
            shared.lines.notify_one();
            st.waiting += 1;
            st = shared
                .space
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
            st.waiting -= 1;
        }
        if st.closed {
            drop(st);
            let mut sink = self.late.lock().unwrap_or_else(PoisonError::into_inner);
            return sink.write_all(line).map(|()| line.len());
        }
        let first = st.buf.is_empty();
        st.buf.extend_from_slice(line);
        let full = st.buf.len() >= HIGH_WATER.min(shared.limit);
        drop(st);
        if first || full {
            shared.lines.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // The thread writes within GATHER; a flush per line would undo the batching.
        Ok(())
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.lines.notify_one();
        self.shared.space.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A sink that hands every write to the test.
    struct Sink(mpsc::Sender<Vec<u8>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let _ = self.0.send(b.to_vec());
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn lines(threads: usize, each: usize, limit: usize) -> Vec<u8> {
        let (tx, rx) = mpsc::channel();
        let Ok((writer, guard)) = spawn(Sink(tx), limit) else {
            panic!("no log thread");
        };
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let mut w = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..each {
                        let _ = w.write_all(format!("thread {t} line {i:05}\n").as_bytes());
                    }
                })
            })
            .collect();
        for h in handles {
            let _ = h.join();
        }
        drop(guard);
        rx.try_iter().flatten().collect()
    }

    /// Every line of every thread, each thread's in the order written.
    fn check(out: &[u8], threads: usize, each: usize) {
        let text = String::from_utf8_lossy(out);
        for t in 0..threads {
            let own: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with(&format!("thread {t} ")))
                .collect();
            let want: Vec<String> = (0..each)
                .map(|i| format!("thread {t} line {i:05}"))
                .collect();
            assert_eq!(own, want, "thread {t}");
        }
        assert_eq!(text.lines().count(), threads * each);
    }

    #[test]
    fn every_line_is_written_in_order_once_the_guard_drops() {
        check(&lines(4, 2000, LIMIT), 4, 2000);
    }

    #[test]
    fn writers_wait_for_room_rather_than_drop_lines_past_the_limit() {
        // 64 bytes of room for 8,000 lines of 20 bytes: nearly every line waits.
        check(&lines(4, 2000, 64), 4, 2000);
    }

    #[test]
    fn a_line_after_the_guard_dropped_goes_straight_to_the_sink() {
        let (tx, rx) = mpsc::channel();
        let Ok((mut writer, guard)) = spawn(Sink(tx), LIMIT) else {
            panic!("no log thread");
        };
        drop(guard);
        let _ = writer.write_all(b"late\n");
        assert_eq!(rx.try_iter().flatten().collect::<Vec<u8>>(), b"late\n");
    }
}
