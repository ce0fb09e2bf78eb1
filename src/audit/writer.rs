//! The audit file's one writer: a thread of its own (appending is blocking I/O, which has
//! no place on the runtime's workers), fed by a bounded queue, rotating by size.
//!
//! Rotation: before a line would take the file past `audit.max_size`, `FILE.{n-1}` becomes
//! `FILE.{n}` down to `FILE` becoming `FILE.1`, and the oldest (`FILE.{max_files}`) is
//! overwritten; a new `FILE` is made (mode 0600). A line is never split across files.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use crate::config::Audit as Settings;
use crate::metrics::{EventLabels, Metrics};
use crate::throttle::Throttle;

pub(super) enum Msg {
    Line(String),
    /// Answered once everything queued before it is written and flushed.
    Flush(mpsc::Sender<()>),
}

/// The audit file could not be opened at start.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the audit file {path}: {source}")]
pub(crate) struct OpenError {
    pub(crate) path: PathBuf,
    #[source]
    pub(crate) source: std::io::Error,
}

/// Opens the file now (so that start-up fails on a file it cannot write) and starts the
/// thread that writes it.
pub(super) fn start(
    path: &Path,
    settings: &Settings,
    metrics: Arc<Metrics>,
) -> Result<SyncSender<Msg>, OpenError> {
    let file = open(path).map_err(|source| OpenError {
        path: path.to_path_buf(),
        source,
    })?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let (tx, rx) = mpsc::sync_channel(settings.queue);
    let mut w = Writer {
        path: path.to_path_buf(),
        max_size: settings.max_size,
        max_files: settings.max_files,
        out: BufWriter::new(file),
        size,
        metrics,
        errors: Throttle::new(Duration::from_secs(60)),
    };
    std::thread::Builder::new()
        .name("audit-writer".into())
        .spawn(move || w.run(rx))
        .map_err(|source| OpenError {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(tx)
}

fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

pub(super) struct Writer {
    path: PathBuf,
    max_size: u64,
    max_files: usize,
    out: BufWriter<File>,
    /// Bytes in the current file.
    size: u64,
    metrics: Arc<Metrics>,
    errors: Throttle,
}

impl Writer {
    /// Until every sender is gone: takes what is queued, writes it, flushes once per batch.
    fn run(&mut self, rx: Receiver<Msg>) {
        while let Ok(first) = rx.recv() {
            let mut next = Some(first);
            let mut acks = Vec::new();
            while let Some(msg) = next {
                match msg {
                    Msg::Line(line) => self.write(&line),
                    Msg::Flush(ack) => acks.push(ack),
                }
                next = rx.try_recv().ok();
            }
            if let Err(e) = self.out.flush() {
                self.failed("flush", &e);
            }
            for ack in acks {
                let _ = ack.send(());
            }
        }
    }

    pub(super) fn write(&mut self, line: &str) {
        let len = line.len() as u64 + 1;
        if self.size > 0 && self.size.saturating_add(len) > self.max_size {
            self.rotate();
        }
        let written = self
            .out
            .write_all(line.as_bytes())
            .and_then(|()| self.out.write_all(b"\n"));
        match written {
            Ok(()) => {
                self.size = self.size.saturating_add(len);
                self.count("written");
            }
            Err(e) => self.failed("write", &e),
        }
    }

    /// Shifts the rotated files up by one and starts a new file. On a failure the current
    /// file stays in use: a full disk loses events (counted), not the daemon.
    fn rotate(&mut self) {
        if let Err(e) = self.out.flush() {
            self.failed("flush", &e);
        }
        let rotated = |n: usize| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        for n in (1..self.max_files).rev() {
            let from = rotated(n);
            if from.exists() {
                if let Err(e) = std::fs::rename(&from, rotated(n + 1)) {
                    self.failed("rotate", &e);
                }
            }
        }
        if let Err(e) = std::fs::rename(&self.path, rotated(1)) {
            self.failed("rotate", &e);
            return;
        }
        match open(&self.path) {
            Ok(f) => {
                self.out = BufWriter::new(f);
                self.size = 0;
            }
            Err(e) => self.failed("reopen", &e),
        }
    }

    fn failed(&self, what: &str, e: &std::io::Error) {
        self.count("failed");
        if let Some(held) = self.errors.allow() {
            tracing::error!(file = %self.path.display(), error = %e, earlier_lines_held_back = held,
                "audit: {what} failed");
        }
    }

    fn count(&self, event: &'static str) {
        self.metrics
            .audit_events
            .get_or_create(&EventLabels { event })
            .inc();
    }
}

#[cfg(test)]
impl Writer {
    /// A writer of `path` without its thread, for the rotation tests.
    pub(super) fn for_test(
        path: &Path,
        max_size: u64,
        max_files: usize,
    ) -> std::io::Result<Writer> {
        Ok(Writer {
            path: path.to_path_buf(),
            max_size,
            max_files,
            out: BufWriter::new(open(path)?),
            size: 0,
            metrics: Arc::new(Metrics::new()),
            errors: Throttle::new(Duration::from_secs(60)),
        })
    }

    pub(super) fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
