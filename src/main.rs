//! The kube-ldap-webhook binary: the command line over the library.

// As in the library: no unwrap on what a network or a file can make fail.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kube_ldap_webhook::{
    authentication_config, check_config, config_path, credential, forbid_core_dumps, keygen,
    keygen_es256, kubeconfig, serve,
};

/// Kubernetes webhook token authentication against LDAP and Active Directory.
#[derive(Parser)]
#[command(name = "kube-ldap-webhook", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground (systemd Type=notify).
    Serve {
        /// Config file [default: $KUBE_LDAP_WEBHOOK_CONFIG or /etc/kube-ldap-webhook/config.toml]
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate the config file; with --connect also bind to LDAP.
    CheckConfig {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Bind the service account and search the user base.
        #[arg(long)]
        connect: bool,
    },
    /// Print (or with --output write) the webhook kubeconfig for kube-apiserver, or with
    /// --user-login the kubeconfig of a user who logs in at the daemon.
    Kubeconfig(KubeconfigArgs),
    /// kubectl exec credential plugin: prints an ExecCredential.
    Credential {
        /// LDAP username [env: KUBE_LDAP_WEBHOOK_USERNAME]
        #[arg(long, env = "KUBE_LDAP_WEBHOOK_USERNAME")]
        username: Option<String>,
        /// Read the password from this file [env: KUBE_LDAP_WEBHOOK_PASSWORD_FILE, when
        /// neither flag is given]
        #[arg(long, conflicts_with = "password_fd")]
        password_file: Option<PathBuf>,
        /// Read the password from this open file descriptor.
        #[arg(long)]
        password_fd: Option<i32>,
        /// The daemon's login endpoint, https://HOST:PORT[/login]: log in there once and
        /// print the issued token (cached under $XDG_CACHE_HOME/kube-ldap-webhook) until
        /// it expires, instead of the password itself.
        #[arg(long)]
        login_url: Option<String>,
        /// With --login-url: the CA of the login endpoint's certificate [default: the
        /// system's roots].
        #[arg(long, requires = "login_url", conflicts_with = "ca_data")]
        ca_file: Option<PathBuf>,
        /// With --login-url: that CA as base64 of PEM (as a kubeconfig's
        /// certificate-authority-data).
        #[arg(long, requires = "login_url")]
        ca_data: Option<String>,
        /// With --login-url: forget the cached tokens of that URL (of --username only,
        /// when given) and print nothing.
        #[arg(long, requires = "login_url")]
        logout: bool,
        /// With --login-url: do not try the Kerberos ticket of the credential cache
        /// ($KRB5CCNAME) first; log in with the password.
        #[arg(long, requires = "login_url")]
        no_kerberos: bool,
        /// With --login-url: print a short-lived JWT for kube-apiserver's
        /// --authentication-config instead, exchanged for the session at the daemon's
        /// POST /token (cached beside the session until shortly before it expires).
        #[arg(long, requires = "login_url")]
        jwt: bool,
        /// With --login-url: when to print the line a login brings about a password
        /// about to expire (auto: when kubectl says the run is interactive, or run by
        /// hand, when stderr is a terminal).
        #[arg(long, value_enum, default_value_t, requires = "login_url")]
        password_expiry_warning: credential::ExpiryWarning,
    },
    /// Write a new key pair: DIR/signing.key (mode 0600) and DIR/signing.pub. Never
    /// overwrites.
    Keygen {
        /// The directory to write to (created, mode 0700, when missing).
        #[arg(long)]
        out: PathBuf,
        /// ed25519 for issued tokens ([tokens]), es256 (P-256) for JWTs ([jwt]).
        #[arg(long, value_enum, default_value_t = KeyAlgorithm::Ed25519)]
        algorithm: KeyAlgorithm,
    },
    /// Print the AuthenticationConfiguration (apiserver.config.k8s.io/v1) that points
    /// kube-apiserver's JWT authenticator at this daemon's [jwt] issuer.
    AuthenticationConfig {
        #[arg(long)]
        config: Option<PathBuf>,
        /// The CA that signed the login listener's certificate [default: none embedded,
        /// kube-apiserver uses the system's roots].
        #[arg(long)]
        ca_file: Option<PathBuf>,
    },
    /// Print the version.
    Version,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum KeyAlgorithm {
    Ed25519,
    Es256,
}

#[derive(clap::Args)]
struct KubeconfigArgs {
    /// The daemon's URL, e.g. https://127.0.0.1:8443/authenticate
    #[arg(
        long,
        required_unless_present = "user_login",
        conflicts_with = "user_login"
    )]
    server: Option<String>,
    /// CA that signed the daemon's server certificate (with --user-login: the login
    /// endpoint's, whose certificate is the daemon's; the system's roots when absent).
    #[arg(long, required_unless_present = "user_login")]
    ca_file: Option<PathBuf>,
    /// kube-apiserver's client certificate.
    #[arg(
        long,
        required_unless_present = "user_login",
        conflicts_with = "user_login"
    )]
    client_cert: Option<PathBuf>,
    /// kube-apiserver's client key.
    #[arg(
        long,
        required_unless_present = "user_login",
        conflicts_with = "user_login"
    )]
    client_key: Option<PathBuf>,
    /// A user's kubeconfig instead: kubectl logs in at this login endpoint of the daemon,
    /// e.g. https://k8s-login.example.org:8444
    #[arg(long, requires_all = ["cluster_server", "cluster_ca_file"])]
    user_login: Option<String>,
    /// With --user-login: kube-apiserver's URL.
    #[arg(long, requires = "user_login")]
    cluster_server: Option<String>,
    /// With --user-login: the CA of kube-apiserver's certificate.
    #[arg(long, requires = "user_login")]
    cluster_ca_file: Option<PathBuf>,
    /// With --user-login: the user's LDAP username (asked for at login when absent).
    #[arg(long, requires = "user_login")]
    username: Option<String>,
    /// With --user-login: the name of the cluster and context [default: the cluster
    /// server's host].
    #[arg(long, requires = "user_login")]
    name: Option<String>,
    /// With --user-login: the plugin's command on the user's machine.
    #[arg(long, requires = "user_login")]
    exec_command: Option<String>,
    /// With --user-login: the plugin hands kubectl short-lived JWTs of the daemon's issuer
    /// ([jwt]), for a kube-apiserver that verifies them itself (--authentication-config).
    #[arg(long, requires = "user_login")]
    jwt: bool,
    /// Embed the files as *-data instead of referring to their paths.
    #[arg(long)]
    embed: bool,
    /// Write to this file, mode 0600, instead of stdout.
    #[arg(long)]
    output: Option<PathBuf>,
    /// With --output: replace an existing file.
    #[arg(long, requires = "output")]
    force: bool,
}

impl KubeconfigArgs {
    fn render(&self) -> Result<String, kubeconfig::KubeconfigError> {
        if let (Some(login_url), Some(cluster_server), Some(cluster_ca_file)) = (
            &self.user_login,
            &self.cluster_server,
            &self.cluster_ca_file,
        ) {
            return kubeconfig::render_user(&kubeconfig::UserOptions {
                login_url,
                login_ca_file: self.ca_file.as_deref(),
                cluster_server,
                cluster_ca_file,
                embed: self.embed,
                username: self.username.as_deref(),
                name: self.name.as_deref(),
                command: self.exec_command.as_deref().unwrap_or("kube-ldap-webhook"),
                jwt: self.jwt,
            });
        }
        // clap requires all four without --user-login.
        let missing = kubeconfig::KubeconfigError::Missing;
        kubeconfig::render(&kubeconfig::Options {
            server: self.server.as_deref().ok_or_else(|| missing("--server"))?,
            ca_file: self
                .ca_file
                .as_deref()
                .ok_or_else(|| missing("--ca-file"))?,
            client_cert: self
                .client_cert
                .as_deref()
                .ok_or_else(|| missing("--client-cert"))?,
            client_key: self
                .client_key
                .as_deref()
                .ok_or_else(|| missing("--client-key"))?,
            embed: self.embed,
        })
    }

    fn write(&self) -> Result<(), kubeconfig::KubeconfigError> {
        let text = self.render()?;
        match &self.output {
            Some(path) => kubeconfig::write_private(path, &text, self.force),
            None => {
                // Only the webhook kubeconfig holds a key.
                if let Some(w) = kubeconfig::stdout_warning(self.embed && self.user_login.is_none())
                {
                    eprintln!("kube-ldap-webhook: {w}");
                }
                to_stdout(&text).map_err(kubeconfig::KubeconfigError::Stdout)
            }
        }
    }
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("kube-ldap-webhook: {e}");
    ExitCode::FAILURE
}

/// Writes to stdout; a closed pipe or a full disk is an error message, not a panic as with
/// `print!`.
fn to_stdout(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|_| out.flush())
}

fn succeed<E: std::fmt::Display>(written: Result<(), E>) -> ExitCode {
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn main() -> ExitCode {
    // Before anything reads a password, the bind password or a private key.
    if let Err(e) = forbid_core_dumps() {
        eprintln!("kube-ldap-webhook: warning: cannot turn off core dumps: {e}");
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => match serve(&config_path(config.as_deref())) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "cannot serve");
                fail(e)
            }
        },
        Command::CheckConfig { config, connect } => {
            match check_config(&config_path(config.as_deref()), connect) {
                Ok(summary) => succeed(to_stdout(&format!("{summary}\n"))),
                Err(e) => fail(e),
            }
        }
        Command::Kubeconfig(args) => succeed(args.write()),
        Command::Credential {
            username,
            password_file,
            password_fd,
            login_url,
            ca_file,
            ca_data,
            logout,
            no_kerberos,
            jwt,
            password_expiry_warning,
        } => match credential::run(credential::Options {
            username,
            password_file: password_file.as_deref(),
            password_fd,
            login: login_url.as_deref().map(|url| credential::Login {
                url,
                ca_file: ca_file.as_deref(),
                ca_data: ca_data.as_deref(),
                logout,
                kerberos: !no_kerberos,
                jwt,
            }),
            expiry_warning: password_expiry_warning,
        }) {
            Ok(Some(json)) => {
                let mut out = std::io::stdout().lock();
                succeed(writeln!(out, "{}", json.as_str()).and_then(|_| out.flush()))
            }
            Ok(None) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        },
        Command::Keygen { out, algorithm } => {
            let (made, section) = match algorithm {
                KeyAlgorithm::Ed25519 => (keygen(&out), "tokens"),
                KeyAlgorithm::Es256 => (keygen_es256(&out), "jwt"),
            };
            match made {
                Ok(kid) => succeed(to_stdout(&format!(
                    "wrote {} (keep it on the nodes that sign, mode 0600) and {} (list it in \
                     {section}.verification_key_files on every node); key id {kid}\n",
                    out.join("signing.key").display(),
                    out.join("signing.pub").display()
                ))),
                Err(e) => fail(e),
            }
        }
        Command::AuthenticationConfig { config, ca_file } => {
            match authentication_config(&config_path(config.as_deref()), ca_file.as_deref()) {
                Ok(yaml) => succeed(to_stdout(&yaml)),
                Err(e) => fail(e),
            }
        }
        Command::Version => succeed(to_stdout(&format!(
            "kube-ldap-webhook {}\n",
            env!("CARGO_PKG_VERSION")
        ))),
    }
}
