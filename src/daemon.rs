//! `serve` and `check-config`: logging, the runtime, signals, reload and shutdown.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

use crate::audit::{Audit, Event, Kind};
use crate::config::{self, Config, LogFormat};
use crate::directory::Readiness;
use crate::lockout::Lockout;
use crate::logwriter::{self, LogGuard};
use crate::metrics::{EventLabels, Metrics};
use crate::server::{self, Listeners, Runtime, ServeError, Shared};
use crate::systemd;

/// Why `serve` or `check-config` failed; `main` prints it.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    /// The configuration, a certificate or a listener was refused: what `serve` refuses at
    /// start and at a reload, which `check-config` refuses the same way.
    Serve(#[from] ServeError),
    #[error("cannot start the async runtime: {0}")]
    /// The async runtime could not start.
    Runtime(std::io::Error),
    #[error("LDAP check failed: {0}")]
    /// `check-config --connect` reached no LDAP server.
    Connect(String),
}

/// The running log filter, swapped on reload when `log.level` changes.
static LOG_FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Logs go to the journal under systemd (structured fields kept), to stderr otherwise.
/// `RUST_LOG` overrides `log.level`. Libraries that log through the `log` crate (ldap3,
/// rustls) reach the same output: tracing-subscriber installs the bridge on `try_init`.
///
/// Text lines go through a buffer that a thread of its own writes to stderr
/// (`logwriter.rs`): a review's line costs its formatting and a copy, not a write(2)
/// while the review holds its worker thread. Bounded and not lossy; the returned guard
/// writes what is buffered when dropped, at the end of `serve`.
pub(crate) fn init_logging(level: &str, format: LogFormat) -> Option<LogGuard> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| filter_for(level));
    let (filter, handle) = reload::Layer::new(filter);
    let journald = match format {
        LogFormat::Journald => true,
        LogFormat::Text => false,
        LogFormat::Auto => systemd::stderr_is_journal(),
    };
    let journal = if journald {
        tracing_journald::layer().ok()
    } else {
        None
    };
    // Without its thread (none could be started), lines go to stderr as they come.
    let buffered = match journal {
        Some(_) => None,
        None => logwriter::spawn(std::io::stderr(), logwriter::LIMIT).ok(),
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (text, direct, guard) = match (journal.is_some(), buffered) {
        (true, _) => (None, None, None),
        (false, Some((writer, guard))) => {
            let layer = tracing_subscriber::fmt::layer()
                .with_writer(move || writer.clone())
                .with_ansi(ansi)
                .with_target(false);
            (Some(layer), None, Some(guard))
        }
        (false, None) => {
            let layer = tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(ansi)
                .with_target(false);
            (None, Some(layer), None)
        }
    };
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(journal)
        .with(text)
        .with(direct)
        .try_init();
    if installed.is_ok() {
        let _ = LOG_FILTER.set(handle);
    }
    guard
}

/// Applies a reloaded `log.level`, unless `RUST_LOG` decides the level.
fn reload_log_level(level: &str) {
    if std::env::var_os("RUST_LOG").is_some() {
        return;
    }
    if let Some(handle) = LOG_FILTER.get() {
        // The level was validated with the rest of the config.
        if handle.modify(|f| *f = filter_for(level)).is_err() {
            tracing::warn!("could not apply the new log.level");
        }
    }
}

/// `log.level` as a filter. A bare level is the daemon's own: the libraries under it log at
/// `warn` at most, since at debug and trace they describe TLS handshakes and connections
/// in detail (session tickets included) and drown the review lines. A filter with targets
/// (`"debug,rustls=debug"`) is taken as written, and so is `RUST_LOG`.
fn filter_for(level: &str) -> EnvFilter {
    // rustls logs a line of its own per connection for things any client can send (warning
    // alerts): held at `error` unless the filter names it, so that no client can write
    // around the daemon's rate-limited connection logging.
    let rustls = if level.contains("rustls") {
        ""
    } else {
        ",rustls=error"
    };
    match level.trim().parse::<LevelFilter>() {
        Ok(own) => EnvFilter::new(format!(
            "{},{}={own}{rustls}",
            own.min(LevelFilter::WARN),
            env!("CARGO_CRATE_NAME")
        )),
        Err(_) => EnvFilter::new(format!("{level}{rustls}")),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, DaemonError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)
}

/// Runs the daemon with the config at `path` until SIGTERM; reloads on SIGHUP.
pub fn serve(path: &Path) -> Result<(), DaemonError> {
    let config = config::load(path).map_err(ServeError::from)?;
    let _log = init_logging(&config.log.level, config.log.format);
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    crate::tls::install_default_provider();
    runtime()?.block_on(run(config, path))
}

async fn run(config: Config, path: &Path) -> Result<(), DaemonError> {
    // Before anything listens: a SIGHUP or SIGTERM that arrives once the port answers must
    // find its handler, not the default action that ends the process.
    let mut hup = signal(SignalKind::hangup()).map_err(ServeError::Signal)?;
    let mut term = signal(SignalKind::terminate()).map_err(ServeError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Signal)?;
    let metrics = Arc::new(Metrics::new());
    let lockout = Arc::new(Lockout::new(
        config.cache.max_failures,
        config.cache.failure_window,
    ));
    let audit = Arc::new(open_audit(&config, metrics.clone())?);
    let runtime = Runtime::build(config, metrics.clone(), lockout.clone(), audit.clone())?;
    runtime.publish_tls_expiry(&metrics);
    let listeners = Listeners::bind(&runtime.config).await?;
    let shared = Arc::new(Shared {
        current: ArcSwap::from_pointee(runtime),
        metrics,
        lockout,
        login_rate: server::ratelimit::RateLimit::new(),
        audit,
    });
    let (stop, stopped) = watch::channel(false);
    let tasks = spawn_listeners(listeners, &shared, &stopped);
    log_serving(&shared, path);
    systemd::ready();
    systemd::spawn_watchdog();
    spawn_startup_probe(&shared);

    loop {
        tokio::select! {
            _ = hup.recv() => reload(&shared, path).await,
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("shutting down: no new connections, finishing in-flight reviews");
    systemd::stopping();
    let _ = stop.send(true);
    for t in tasks {
        let _ = t.await;
    }
    tokio::task::block_in_place(|| shared.audit.flush(Duration::from_secs(5)));
    tracing::info!("stopped");
    Ok(())
}

/// One task per listener: reviews, and login and ops when configured.
fn spawn_listeners(
    listeners: Listeners,
    shared: &Arc<Shared>,
    stopped: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let port = |p, l| tokio::spawn(server::run_listener(p, l, shared.clone(), stopped.clone()));
    let mut tasks = vec![port(server::Port::Reviews, listeners.reviews)];
    tasks.extend(listeners.login.map(|l| port(server::Port::Login, l)));
    tasks.extend(
        listeners
            .ops
            .map(|l| tokio::spawn(server::run_ops(l, shared.clone(), stopped.clone()))),
    );
    tasks
}

/// The start-up line: where the daemon listens and with which token keys.
fn log_serving(shared: &Shared, path: &Path) {
    let rt = shared.current.load();
    let c = &rt.config;
    let keys = c.tokens.issued.key_ids().join(",");
    tracing::info!(
        listen = %c.server.listen,
        ops = %c.server.ops_listen.map_or("disabled".to_string(), |a| a.to_string()),
        login = %c.login.as_ref().map_or("disabled".to_string(), |l| l.listen.to_string()),
        token_keys = %if keys.is_empty() { "none" } else { keys.as_str() },
        jwt_issuer = %c.jwt.as_ref().map_or("disabled", |j| j.url.as_str()),
        jwt_key = %c.jwt.as_ref().map_or("none", |j| j.signing_kid()),
        config = %path.display(),
        version = env!("CARGO_PKG_VERSION"),
        "kube-ldap-webhook serving"
    );
}

/// The time a probe of every directory may take: each connects and searches once.
fn probe_budget(config: &Config) -> Duration {
    config
        .each_directory()
        .map(|(_, l, _)| l.timeout + l.connect_timeout)
        .max()
        .unwrap_or_default()
}

/// Starts the runtime's background work (DNS lookups) and says early in the log whether
/// each directory is reachable; serving does not wait for it.
fn spawn_startup_probe(shared: &Arc<Shared>) {
    let rt = shared.current.load_full();
    rt.authenticator.directory().start();
    tokio::spawn(async move {
        let deadline = crate::clock::now() + probe_budget(&rt.config);
        for p in rt.authenticator.directory().probe(deadline).await.probes {
            match p.answer {
                Ok(url) => {
                    tracing::info!(directory = %p.directory, server = %url, "LDAP reachable")
                }
                Err(e) => tracing::warn!(directory = %p.directory, error = %e,
                    "no LDAP server reachable yet; reviews answer 'backend unavailable' until one is"),
            }
        }
    });
}

/// Builds a complete new runtime from disk and swaps it in only if every part loaded.
/// In-flight reviews finish on the old one; the answer cache starts empty.
async fn reload(shared: &Shared, path: &Path) {
    systemd::reloading();
    let keys_before = key_ids(&shared.current.load().config);
    let built = config::load(path).map_err(ServeError::from).and_then(|c| {
        let (metrics, lockout) = (shared.metrics.clone(), shared.lockout.clone());
        Runtime::build(c, metrics, lockout, shared.audit.clone())
    });
    audit_reload(
        &shared.audit,
        built.as_ref().map(|r| &*r.config),
        &keys_before,
    );
    match built {
        Ok(new) => {
            for w in &new.config.warnings {
                tracing::warn!("{w}");
            }
            let old = shared.current.load();
            if new.config.log.level != old.config.log.level {
                reload_log_level(&new.config.log.level);
            }
            let login_at = |c: &Config| c.login.as_ref().map(|l| l.listen);
            if new.config.server.listen != old.config.server.listen
                || new.config.server.ops_listen != old.config.server.ops_listen
                || login_at(&new.config) != login_at(&old.config)
            {
                tracing::warn!(
                    "server.listen, server.ops_listen and login.listen changes take effect at the next restart"
                );
            }
            if shared.audit.reconfigure(&new.config.audit) {
                tracing::warn!(
                    "audit.file, audit.max_size, audit.max_files and audit.queue changes take effect at the next restart"
                );
            }
            let cleared = old.authenticator.cached_entries();
            // Lockout counts survive the reload; only its settings change.
            let c = &new.config.cache;
            shared.lockout.configure(c.max_failures, c.failure_window);
            let keys = new.config.tokens.issued.key_ids().join(",");
            let jwt_key = new
                .config
                .jwt
                .as_ref()
                .map_or("none".to_string(), |j| j.signing_kid().to_string());
            drop(old);
            new.authenticator.directory().start();
            let new = Arc::new(new);
            shared.current.store(new.clone());
            new.publish_tls_expiry(&shared.metrics);
            shared
                .metrics
                .reloads
                .get_or_create(&EventLabels { event: "ok" })
                .inc();
            tracing::info!(
                cleared,
                token_keys = %if keys.is_empty() { "none" } else { keys.as_str() },
                jwt_key = %jwt_key,
                "configuration, certificates and CAs reloaded; answer cache cleared"
            );
        }
        Err(e) => {
            shared
                .metrics
                .reloads
                .get_or_create(&EventLabels { event: "failed" })
                .inc();
            tracing::error!(error = %e, "reload refused; still serving the previous configuration");
        }
    }
    systemd::ready();
}

/// Opens the audit file of `config` at start; a file that cannot be opened is a
/// configuration error naming `audit.file`.
fn open_audit(config: &Config, metrics: Arc<Metrics>) -> Result<Audit, ServeError> {
    Audit::open(&config.audit, metrics).map_err(|e| {
        ServeError::Config(config::ConfigError::Invalid {
            file: config.source.display().to_string(),
            key: "audit.file".into(),
            message: e.to_string(),
        })
    })
}

/// The key ids a runtime signs and verifies with: issued tokens' and the JWT issuer's.
fn key_ids(c: &Config) -> Vec<String> {
    let mut ids: Vec<String> = c
        .tokens
        .issued
        .key_ids()
        .into_iter()
        .map(String::from)
        .collect();
    ids.extend(c.jwt.as_ref().map(|j| format!("jwt:{}", j.signing_kid())));
    ids
}

/// A reload's audit events: the reload itself, and a key reload when the keys changed.
fn audit_reload(audit: &Audit, built: Result<&Config, &ServeError>, keys_before: &[String]) {
    match built {
        Ok(config) => {
            audit.record(Event::new(Kind::ConfigReload, "ok", "reloaded on SIGHUP"));
            let keys = key_ids(config);
            if keys != keys_before {
                audit.record(Event {
                    keys: Some(&keys),
                    ..Event::new(Kind::KeyReload, "ok", "the token or JWT keys changed")
                });
            }
        }
        Err(e) => {
            let why = e.to_string();
            audit.record(Event::new(Kind::ConfigReload, "failed", &why));
        }
    }
}

/// Validates the file (and the files it names); with `connect`, binds the service account
/// and searches the user base on the first server that answers.
pub fn check_config(path: &Path, connect: bool) -> Result<String, DaemonError> {
    let config = config::load(path).map_err(ServeError::from)?;
    let _log = init_logging("warn", LogFormat::Text);
    // What `serve` builds, built the same way: one bad file reads the same under both.
    let metrics = Arc::new(Metrics::new());
    let rt = Runtime::build(
        config,
        metrics.clone(),
        Arc::new(Lockout::new(0, Duration::ZERO)),
        Arc::new(Audit::off(metrics)),
    )?;
    let config = &rt.config;
    let mut summary = format!("{}: configuration is valid", path.display());
    for w in &config.warnings {
        summary.push_str(&format!("\nwarning: {w}"));
    }
    if connect {
        crate::tls::install_default_provider();
        let deadline = crate::clock::now() + probe_budget(config) + Duration::from_millis(100);
        let readiness = runtime()?.block_on(rt.authenticator.directory().probe(deadline));
        summary.push_str(&connect_report(config, &readiness)?);
    }
    Ok(summary)
}

/// What `check-config --connect` found in each directory; an error naming every directory
/// none of whose servers answered.
fn connect_report(config: &Config, readiness: &Readiness) -> Result<String, DaemonError> {
    let named = readiness.probes.len() > 1;
    let mut report = String::new();
    let mut failed = Vec::new();
    for (p, (_, ldap, _)) in readiness.probes.iter().zip(config.each_directory()) {
        let name = if named {
            format!("{}: ", p.directory)
        } else {
            String::new()
        };
        match &p.answer {
            Ok(url) => {
                let who = match &ldap.service {
                    Some(s) => format!("bound as {} and searched {}", s.bind_dn, ldap.user.base_dn),
                    None => "connected (direct bind: no service account to test)".to_string(),
                };
                report.push_str(&format!("\n{name}{url}: {who}"));
            }
            Err(e) => failed.push(format!("{name}{e}")),
        }
        for line in &p.details {
            report.push_str(&format!("\n  {line}"));
        }
    }
    if failed.is_empty() {
        Ok(report)
    } else {
        Err(DaemonError::Connect(format!(
            "{}{report}",
            failed.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::filter_for;

    #[test]
    fn a_bare_level_is_the_daemons_own_and_libraries_stay_at_warn() {
        assert_eq!(
            filter_for("trace").to_string(),
            "kube_ldap_webhook=trace,rustls=error,warn"
        );
        assert_eq!(
            filter_for("error").to_string(),
            "kube_ldap_webhook=error,rustls=error,error"
        );
    }

    #[test]
    fn rustls_stays_at_error_unless_named() {
        assert_eq!(
            filter_for("debug,ldap3=debug").to_string(),
            "rustls=error,ldap3=debug,debug"
        );
    }

    #[test]
    fn a_filter_with_targets_is_taken_as_written() {
        assert_eq!(
            filter_for("debug,rustls=trace").to_string(),
            "rustls=trace,debug"
        );
    }
}
