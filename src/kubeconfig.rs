//! The webhook kubeconfig for kube-apiserver's `--authentication-token-webhook-config-file`,
//! and ([`render_user`]) the kubeconfig of a user who logs in at the daemon.

mod user;

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;

pub use user::{render_user, UserOptions};

/// Why no kubeconfig was written.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("--server must be an https:// URL, got `{0}`")]
    /// `--server` is not an `https://` URL.
    Server(String),
    #[error("{flag} must be an https:// URL with a host, got `{url}`")]
    /// `--cluster-server` is not an `https://` URL.
    Url {
        /// The flag.
        flag: &'static str,
        /// What it said.
        url: String,
    },
    #[error("{0} is required")]
    /// A flag the webhook kubeconfig needs is missing.
    Missing(&'static str),
    #[error("--user-login: {0}")]
    /// `--user-login` is not a login URL the plugin would take.
    UserLogin(String),
    #[error("--username must not be empty or contain `:` or control characters")]
    /// A username the plugin would refuse.
    Username,
    #[error("--name must not be empty or contain control characters")]
    /// An unusable `--name`.
    Name,
    #[error("cannot read {path}: {source}")]
    /// A certificate or key file could not be read.
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    #[error("{0} already exists; --force replaces it")]
    /// `--output` names an existing file and `--force` was not given.
    Exists(String),
    #[error("cannot write the kubeconfig to stdout: {0}")]
    /// stdout could not be written.
    Stdout(#[source] std::io::Error),
    #[error("cannot write {path}: {source}")]
    /// `--output` could not be written.
    Write {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What the command line said.
pub struct Options<'a> {
    /// `--server`: the daemon's URL.
    pub server: &'a str,
    /// `--ca-file`: the CA of the daemon's server certificate.
    pub ca_file: &'a Path,
    /// `--client-cert`: kube-apiserver's client certificate.
    pub client_cert: &'a Path,
    /// `--client-key`: its key.
    pub client_key: &'a Path,
    /// `--embed`: the files as `*-data` instead of paths.
    pub embed: bool,
}

fn file_ref(key: &str, path: &Path, embed: bool) -> Result<String, KubeconfigError> {
    if embed {
        let data = std::fs::read(path).map_err(|source| KubeconfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Ok(format!(
            "{key}-data: {}",
            base64::engine::general_purpose::STANDARD.encode(data)
        ))
    } else {
        let abs = std::fs::canonicalize(path).map_err(|source| KubeconfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Ok(format!("{key}: {}", yaml_quote(&abs.display().to_string())))
    }
}

/// JSON strings are valid YAML scalars: quoting this way needs no YAML library.
fn yaml_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// The webhook kubeconfig kube-apiserver's `--authentication-token-webhook-config-file` takes.
pub fn render(o: &Options<'_>) -> Result<String, KubeconfigError> {
    if !o.server.starts_with("https://") {
        return Err(KubeconfigError::Server(o.server.to_string()));
    }
    let ca = file_ref("certificate-authority", o.ca_file, o.embed)?;
    let cert = file_ref("client-certificate", o.client_cert, o.embed)?;
    let key = file_ref("client-key", o.client_key, o.embed)?;
    let server = yaml_quote(o.server);
    let lines = [
        "# kube-apiserver --authentication-token-webhook-config-file".to_string(),
        "apiVersion: v1".into(),
        "kind: Config".into(),
        "clusters:".into(),
        "- name: kube-ldap-webhook".into(),
        "  cluster:".into(),
        format!("    server: {server}"),
        format!("    {ca}"),
        "users:".into(),
        "- name: kube-apiserver".into(),
        "  user:".into(),
        format!("    {cert}"),
        format!("    {key}"),
        "contexts:".into(),
        "- name: webhook".into(),
        "  context:".into(),
        "    cluster: kube-ldap-webhook".into(),
        "    user: kube-apiserver".into(),
        "current-context: webhook".into(),
    ];
    Ok(lines.join("\n") + "\n")
}

/// Writes the kubeconfig readable by its owner only (mode 0600, whatever the umask): with
/// `--embed` it holds kube-apiserver's client key. An existing file is left alone unless
/// `force`, and then replaced in one rename, so no reader ever sees half a file and no
/// moment exists in which the key is readable by others.
pub fn write_private(path: &Path, text: &str, force: bool) -> Result<(), KubeconfigError> {
    let failed = |p: &Path| {
        let path = p.display().to_string();
        move |source| KubeconfigError::Write { path, source }
    };
    if !force {
        return create_private(path, text).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                KubeconfigError::Exists(path.display().to_string())
            }
            _ => failed(path)(e),
        });
    }
    let tmp = temp_beside(path);
    create_private(&tmp, text).map_err(failed(&tmp))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        failed(path)(e)
    })
}

/// Creates `path` (never through an existing file or symlink) with mode 0600 and `text`.
fn create_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    let written = f.write_all(text.as_bytes()).and_then(|_| f.sync_all());
    if written.is_err() {
        let _ = std::fs::remove_file(path);
    }
    written
}

fn temp_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "kubeconfig".into());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// A warning when stdout is a file others may read and the text holds a private key: the
/// shell created it under the umask, typically 0644.
pub fn stdout_warning(embed: bool) -> Option<String> {
    if !embed {
        return None;
    }
    let meta = std::fs::metadata("/proc/self/fd/1").ok()?;
    (meta.is_file() && meta.permissions().mode() & 0o077 != 0).then(|| {
        "warning: stdout is a file that others may read, and this kubeconfig holds the client \
         key: use --output FILE (mode 0600), or chmod 600 it"
            .to_string()
    })
}
