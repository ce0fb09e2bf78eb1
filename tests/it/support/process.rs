//! Child processes (slapd, the daemon, a benchmark's baseline server, LDAP tools) that a test
//! starts and that must never outlive it.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::PATIENCE;

/// A child process killed when dropped, and by the kernel when the test process dies,
/// however it dies (a test binary killed halfway runs no destructors).
pub struct Process {
    child: Child,
}

/// How a wait for a process to listen ended.
pub enum Listening {
    Yes,
    Exited(ExitStatus),
    NotWithinPatience,
}

impl Process {
    /// Spawns `cmd`; `what` names the program in the panic when it cannot run.
    pub fn spawn(cmd: &mut Command, what: &str) -> Process {
        // SAFETY: prctl is async-signal-safe, and nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("{what}: {e}"));
        Process { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with the pid of a child this value still owns (not yet reaped).
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Waits until every one of `ports` on 127.0.0.1 accepts a connection.
    pub fn wait_for_ports(&mut self, ports: &[u16]) -> Listening {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Listening::Exited(status);
            }
            let listening = |p: &u16| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok();
            if ports.iter().all(listening) {
                return Listening::Yes;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Listening::NotWithinPatience
    }

    /// Whether it has handlers for every one of `signals` (SigCgt in /proc/PID/status).
    pub fn handles(&self, signals: &[i32]) -> bool {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .unwrap_or(0);
        signals.iter().all(|s| caught & (1 << (s - 1)) != 0)
    }

    /// Its exit status once it has exited on its own within `within`; None if it has not.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `cmd` with `input` on its stdin, and asserts that it succeeded; `what` names the
/// program (and its package) in the panic.
pub fn run_with_input(cmd: &mut Command, input: &[u8], what: &str) -> Output {
    try_run_with_input(cmd, input).unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// [`run_with_input`] for callers that must not panic: a failure, with stderr, as an error.
pub fn try_run_with_input(cmd: &mut Command, input: &[u8]) -> Result<Output, String> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).map_err(|e| e.to_string())?;
    }
    succeeded(child.wait_with_output().map_err(|e| e.to_string())?)
}

/// Runs `cmd` and asserts that it succeeded; its stdout.
pub fn run_checked(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .map_err(|e| e.to_string())
        .and_then(succeeded)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn succeeded(out: Output) -> Result<Output, String> {
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// user + system CPU seconds of a process, all threads.
#[allow(dead_code, reason = "for benches/ (reviews, issued)")]
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| f.get(i)?.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf only reads a system constant.
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}
