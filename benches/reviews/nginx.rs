//! nginx as the floor of a cache hit: Debian's nginx-light answering every POST with the
//! same fixed TokenReview as the baseline server, on the daemon's certificates (mutual TLS,
//! the same client CA), keep-alive, HTTP/1.1 and HTTP/2 on one port through ALPN.
//! `scripts/test-deps.sh --bench` installs it (`make bench` does).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use hyper::Uri;

use crate::support::{self, Listening, Pki, Process};

const NGINX: &str = "/usr/sbin/nginx";

pub struct Nginx {
    proc: Process,
    port: u16,
    _dir: tempfile::TempDir,
}

/// nginx.conf for `reply` on 127.0.0.1:`port`. Two workers, one per CPU (nginx's `auto`);
/// no access log, so this is nginx at its fastest; a keep-alive connection is never closed
/// for its number of requests (nginx's default closes one every 1,000, which the daemon
/// does not), and HTTP/2 allows the daemon's 256 streams per connection.
fn config(dir: &Path, port: u16, pki: &Pki, reply: &str) -> String {
    let d = dir.display();
    format!(
        r#"daemon off;
master_process on;
worker_processes 2;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 120s;
    http2_max_concurrent_streams 256;
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_client_certificate {ca};
        ssl_verify_client on;
        location = /authenticate {{
            default_type application/json;
            return 200 '{reply}';
        }}
    }}
}}
"#,
        cert = pki.server_cert.display(),
        key = pki.server_key.display(),
        ca = pki.client_ca.display(),
    )
}

impl Nginx {
    /// Whether nginx is installed (`scripts/test-deps.sh --bench`).
    pub fn installed() -> bool {
        Path::new(NGINX).exists()
    }

    /// nginx answering every request with `reply`, with `pki`'s server certificate and
    /// client CA.
    pub fn start(pki: &Pki, reply: &[u8]) -> Nginx {
        let reply = std::str::from_utf8(reply).expect("the reply is JSON text");
        // nginx reads `$` as a variable and `'` ends the string: a TokenReview of the
        // bench's users holds neither.
        assert!(
            !reply.contains(['$', '\'']),
            "reply cannot go into nginx.conf as it is: {reply}"
        );
        let reply = reply.replace('\\', "\\\\");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = support::free_port();
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, config(dir.path(), port, pki, &reply)).expect("nginx.conf");
        let mut proc = Process::spawn(
            Command::new(NGINX)
                .arg("-p")
                .arg(dir.path())
                .arg("-e")
                .arg(dir.path().join("error.log"))
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null()),
            "nginx",
        );
        let log = || std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
        match proc.wait_for_ports(&[port]) {
            Listening::Yes => {
                // The port listens before the master forks its workers.
                let master = proc.pid();
                support::wait_until(|| children(master).len() >= 2, || "nginx's workers".into());
                Nginx {
                    proc,
                    port,
                    _dir: dir,
                }
            }
            Listening::Exited(status) => panic!("nginx exited with {status}: {}", log()),
            Listening::NotWithinPatience => panic!("nginx did not listen: {}", log()),
        }
    }

    pub fn url(&self) -> Uri {
        format!("https://127.0.0.1:{}/authenticate?timeout=30s", self.port)
            .parse()
            .expect("a URL")
    }

    /// The master and its workers, whose CPU time is nginx's.
    pub fn pids(&self) -> Vec<u32> {
        let master = self.proc.pid();
        let mut pids = vec![master];
        pids.extend(children(master));
        pids
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // The master stops its workers on SIGTERM; killed outright, it would leave them.
        self.proc.signal(libc::SIGTERM);
        self.proc.wait_exit(Duration::from_secs(10));
    }
}

/// The processes whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let after = stat.rsplit_once(") ").map_or("", |(_, r)| r);
            after.split_whitespace().nth(1) == Some(&pid.to_string())
        })
        .collect()
}
