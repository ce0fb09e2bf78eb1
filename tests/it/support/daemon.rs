//! The real daemon binary, started by a [`DaemonBuilder`]: its log, its ops listener, its
//! signals, and clients for its review listener.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::{
    bin, sample_sum, tls_connect, token, wait_until, Answer, DaemonBuilder, Https, Listening, Pki,
    Process, PATIENCE,
};

/// The daemon's drain on SIGTERM: 30 s at most.
const DRAIN: Duration = Duration::from_secs(30);

pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    pub port: u16,
    pub ops_port: u16,
    pub config: PathBuf,
    how: DaemonBuilder,
    child: Option<Process>,
}

impl Daemon {
    /// What to start: the fixture directory's site and the tests' config, unless told.
    pub fn builder() -> DaemonBuilder {
        DaemonBuilder::default()
    }

    pub(super) fn start(how: DaemonBuilder) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let written = how.write_to(dir.path());
        let mut d = Daemon {
            dir,
            pki: written.pki,
            port: written.port,
            ops_port: written.ops_port,
            config: written.path,
            how,
            child: None,
        };
        d.spawn(&[]);
        d
    }

    /// Starts the stopped daemon again on its config (which the test may have changed),
    /// with `env` added to the environment it was built with.
    pub fn start_again(&mut self, env: &[(&str, &str)]) {
        assert!(self.child.is_none(), "the daemon is still running");
        self.spawn(env);
    }

    fn spawn(&mut self, env: &[(&str, &str)]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut argv = self.how.wrapper.clone();
        argv.push(bin().into());
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .args(["serve", "--config"])
            .arg(&self.config)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .envs(self.how.env.iter().map(|(k, v)| (k, v)))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(uid) = self.how.run_as {
            std::os::unix::process::CommandExt::uid(&mut cmd, uid);
            std::os::unix::process::CommandExt::gid(&mut cmd, uid);
        }
        let mut child = Process::spawn(&mut cmd, "the daemon binary");
        match child.wait_for_ports(&[self.ops_port, self.port]) {
            Listening::Yes => {}
            Listening::Exited(status) => {
                panic!("daemon exited with {status}; log:\n{}", self.log())
            }
            Listening::NotWithinPatience => {
                panic!("daemon did not start; log:\n{}", self.log())
            }
        }
        // The daemon binds its listeners before it installs its signal handlers; a SIGHUP
        // or SIGTERM the test sends in between would end it rather than reload or drain it.
        wait_until(
            || child.handles(&[libc::SIGHUP, libc::SIGTERM, libc::SIGINT]),
            || {
                format!(
                    "the daemon never handled SIGHUP and SIGTERM; log:\n{}",
                    self.log()
                )
            },
        );
        self.child = Some(child);
    }

    /// The daemon's audit stream (the harness turns it on for every daemon).
    pub fn audit_path(&self) -> PathBuf {
        self.pki.dir.join(super::AUDIT_FILE)
    }

    /// The audit events written so far, each checked against the schema.
    pub fn audit(&self) -> Vec<serde_json::Value> {
        super::audit_events(&self.audit_path())
    }

    /// Waits until the audit stream holds an event for which `matches` holds, and returns it.
    pub fn wait_for_audit(
        &self,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let mut found = None;
        wait_until(
            || {
                found = self.audit().into_iter().find(|e| matches(e));
                found.is_some()
            },
            || format!("no such audit event in:\n{}", self.audit_text()),
        );
        found.unwrap_or_default()
    }

    fn audit_text(&self) -> String {
        std::fs::read_to_string(self.audit_path()).unwrap_or_default()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/authenticate", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn child(&self) -> &Process {
        self.child.as_ref().expect("a running daemon")
    }

    pub fn pid(&self) -> u32 {
        self.child().pid()
    }

    pub fn signal(&self, sig: i32) {
        self.child().signal(sig);
    }

    /// Waits for the daemon to exit on its own (after a signal the test sent).
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("a running daemon");
        child.wait_exit(within).unwrap_or_else(|| {
            panic!(
                "daemon did not exit within {within:?}; log:\n{}",
                self.log()
            )
        })
    }

    /// Sends SIGTERM and waits for the exit status: the drain, plus patience.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(DRAIN + PATIENCE)
    }

    /// A v1 TokenReview of `username:password`, as kube-apiserver would send it.
    pub async fn login(&self, username: &str, password: &str) -> Answer {
        self.client()
            .review(&self.url(), "v1", &token(username, password))
            .await
    }

    /// Reviews `username:password` (v1) every 100 ms until `done` holds for the answer, and
    /// returns that answer: for tests that wait for a TTL or a window to run out.
    pub async fn login_until(
        &self,
        username: &str,
        password: &str,
        mut done: impl FnMut(&Answer) -> bool,
    ) -> Answer {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let a = self.login(username, password).await;
            if done(&a) {
                return a;
            }
            assert!(
                Instant::now() < deadline,
                "{username}: the answer did not change within {PATIENCE:?}; last: {}",
                a.raw
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An HTTP/1.1 client with kube-apiserver's certificate.
    pub fn client(&self) -> Https {
        Https::new(&self.pki, Some(self.pki.client_identity()), false)
    }

    /// An HTTP/2 client with kube-apiserver's certificate: every request of it shares one
    /// connection, as kube-apiserver's do.
    pub fn http2_client(&self) -> Https {
        Https::new(&self.pki, Some(self.pki.client_identity()), true)
    }

    /// A TLS connection to the review listener with kube-apiserver's certificate, for
    /// requests written by hand.
    pub async fn tls(&self) -> TlsStream<TcpStream> {
        let tcp = TcpStream::connect(self.addr()).await.unwrap();
        tls_connect(&self.pki, tcp, Some(self.pki.client_identity()), &[])
            .await
            .expect("a TLS connection with the client certificate")
    }

    /// GET `path` on the ops listener: the status and the body.
    pub fn ops(&self, path: &str) -> (u16, String) {
        self.try_ops(path)
            .unwrap_or_else(|e| panic!("GET {path} on the ops listener: {e}"))
    }

    /// [`Daemon::ops`], for a listener that may refuse or close the connection.
    pub fn try_ops(&self, path: &str) -> std::io::Result<(u16, String)> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.ops_port))?;
        s.set_read_timeout(Some(PATIENCE))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        let code = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((code, body))
    }

    /// The value of `name` on /metrics, summed over the series whose labels include every
    /// pair of `labels`; 0 when there is none.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        sample_sum(&self.metrics(), name, labels)
    }

    /// Directory groups dropped because they would be `system:` names in Kubernetes.
    pub fn reserved_groups_dropped(&self) -> f64 {
        self.metric(
            "kube_ldap_webhook_reserved_names_total",
            &[("event", "group")],
        )
    }

    /// `kube_ldap_webhook_ldap_failovers_total` of `directory`: reviews that went past a
    /// server that did not answer.
    pub fn failovers(&self, directory: &str) -> f64 {
        self.metric(
            "kube_ldap_webhook_ldap_failovers_total",
            &[("directory", directory)],
        )
    }

    /// The text of /metrics.
    pub fn metrics(&self) -> String {
        let (code, text) = self.ops("/metrics");
        assert_eq!(code, 200, "/metrics: {text}");
        text
    }

    /// Waits until the log has a line containing `needle`.
    pub fn wait_for_log(&self, needle: &str) {
        self.wait_for_log_count(needle, 1);
    }

    /// Waits until the log holds `needle` at least `n` times.
    pub fn wait_for_log_count(&self, needle: &str, n: usize) {
        wait_until(
            || self.log().matches(needle).count() >= n,
            || format!("the log never said {needle:?} {n} times:\n{}", self.log()),
        );
    }

    /// Waits until the start-up probe has reached the directory, so that the LDAP operations
    /// a test counts afterwards are its own.
    pub fn wait_for_probe(&self) {
        self.wait_for_log("LDAP reachable");
    }

    /// Waits until /readyz answers 200. Each probe behind it has its own short deadline, which
    /// a busy machine can miss once; readiness is what this checks, not how fast it comes.
    pub fn wait_for_ready(&self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let (code, body) = self.ops("/readyz");
            if code == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "/readyz not 200 within {PATIENCE:?}: {code} {body}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Every test's audit stream is checked for the secrets the tests used; not while
        // a test is already failing (a second panic would abort the run).
        if !std::thread::panicking() {
            super::assert_audit_clean(&self.audit_path());
        }
        // A wrapping profiler writes its output on SIGTERM; a bare daemon is just killed.
        if let Some(child) = self.child.as_mut().filter(|_| !self.how.wrapper.is_empty()) {
            child.signal(libc::SIGTERM);
            child.wait_exit(DRAIN + PATIENCE);
        }
    }
}
