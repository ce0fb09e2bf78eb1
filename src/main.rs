use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kube_ldap_webhook::{config, credential, daemon, kubeconfig};

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
    /// Print the webhook kubeconfig for kube-apiserver.
    Kubeconfig {
        /// The daemon's URL, e.g. https://127.0.0.1:8443/authenticate
        #[arg(long)]
        server: String,
        /// CA that signed the daemon's server certificate.
        #[arg(long)]
        ca_file: PathBuf,
        /// kube-apiserver's client certificate.
        #[arg(long)]
        client_cert: PathBuf,
        /// kube-apiserver's client key.
        #[arg(long)]
        client_key: PathBuf,
        /// Embed the files as *-data instead of referring to their paths.
        #[arg(long)]
        embed: bool,
    },
    /// kubectl exec credential plugin: prints an ExecCredential.
    Credential {
        /// LDAP username [env: KUBE_LDAP_WEBHOOK_USERNAME]
        #[arg(long, env = "KUBE_LDAP_WEBHOOK_USERNAME")]
        username: Option<String>,
        /// Read the password from this file.
        #[arg(long, conflicts_with = "password_fd")]
        password_file: Option<PathBuf>,
        /// Read the password from this open file descriptor.
        #[arg(long)]
        password_fd: Option<i32>,
    },
    /// Print the version.
    Version,
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("kube-ldap-webhook: {e}");
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => match daemon::serve(&config::path_from(config.as_deref())) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "cannot serve");
                fail(e)
            }
        },
        Command::CheckConfig { config, connect } => {
            match daemon::check_config(&config::path_from(config.as_deref()), connect) {
                Ok(summary) => {
                    println!("{summary}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Command::Kubeconfig {
            server,
            ca_file,
            client_cert,
            client_key,
            embed,
        } => match kubeconfig::render(&kubeconfig::Options {
            server: &server,
            ca_file: &ca_file,
            client_cert: &client_cert,
            client_key: &client_key,
            embed,
        }) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::Credential {
            username,
            password_file,
            password_fd,
        } => match credential::run(credential::Options {
            username,
            password_file: password_file.as_deref(),
            password_fd,
        }) {
            Ok(json) => {
                let mut out = std::io::stdout().lock();
                match writeln!(out, "{}", json.as_str()).and_then(|_| out.flush()) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => fail(e),
                }
            }
            Err(e) => fail(e),
        },
        Command::Version => {
            println!("kube-ldap-webhook {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
    }
}
