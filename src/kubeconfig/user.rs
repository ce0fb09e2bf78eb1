//! `kubeconfig --user-login`: the kubeconfig an admin hands to a user. The cluster, a user
//! whose `exec` runs `kube-ldap-webhook credential --login-url ...` (so kubectl logs in at
//! the daemon once and then works on the issued token), and a context that joins them.
//! Nothing in it is secret; with `--embed` it is one self-contained file for a fresh laptop.

use std::path::Path;

use base64::Engine;

use super::{yaml_quote, KubeconfigError};

/// What the command line said.
pub struct UserOptions<'a> {
    /// `--user-login`: the daemon's login endpoint.
    pub login_url: &'a str,
    /// `--ca-file`: the CA of the login endpoint's certificate (the daemon's server CA);
    /// the system's roots when absent.
    pub login_ca_file: Option<&'a Path>,
    /// `--cluster-server`: kube-apiserver's URL.
    pub cluster_server: &'a str,
    /// `--cluster-ca-file`: the CA of kube-apiserver's certificate.
    pub cluster_ca_file: &'a Path,
    /// `--embed`: the CAs as data instead of paths on this machine.
    pub embed: bool,
    /// `--username`: fixed in the plugin's arguments; asked for at login when absent.
    pub username: Option<&'a str>,
    /// `--name`: of the cluster, user and context [default: the cluster server's host].
    pub name: Option<&'a str>,
    /// `--exec-command`: how the user's machine finds this binary.
    pub command: &'a str,
    /// `--jwt`: the plugin hands kubectl JWTs of the daemon's issuer, for a cluster whose
    /// kube-apiserver verifies them itself (`--authentication-config`).
    pub jwt: bool,
}

fn read(path: &Path) -> Result<Vec<u8>, KubeconfigError> {
    std::fs::read(path).map_err(|source| KubeconfigError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn absolute(path: &Path) -> Result<String, KubeconfigError> {
    std::fs::canonicalize(path)
        .map(|p| p.display().to_string())
        .map_err(|source| KubeconfigError::Read {
            path: path.display().to_string(),
            source,
        })
}

/// The cluster server's host, which names everything when `--name` does not.
fn cluster_host(server: &str) -> Result<String, KubeconfigError> {
    let bad = || KubeconfigError::Url {
        flag: "--cluster-server",
        url: server.to_string(),
    };
    let url = url::Url::parse(server).map_err(|_| bad())?;
    if url.scheme() != "https" || !url.username().is_empty() || url.password().is_some() {
        return Err(bad());
    }
    url.host_str()
        .filter(|h| !h.is_empty())
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
        .ok_or_else(bad)
}

/// The plugin's arguments after `credential`.
fn plugin_args(o: &UserOptions<'_>, login_url: &str) -> Result<Vec<String>, KubeconfigError> {
    let mut args = vec!["--login-url".to_string(), login_url.to_string()];
    match (o.login_ca_file, o.embed) {
        (Some(ca), true) => {
            args.push("--ca-data".into());
            args.push(base64::engine::general_purpose::STANDARD.encode(read(ca)?));
        }
        (Some(ca), false) => {
            args.push("--ca-file".into());
            args.push(absolute(ca)?);
        }
        (None, _) => {}
    }
    if let Some(u) = o.username {
        if !crate::credential::username_fits(u) {
            return Err(KubeconfigError::Username);
        }
        args.push("--username".into());
        args.push(u.to_string());
    }
    if o.jwt {
        args.push("--jwt".into());
    }
    Ok(args)
}

/// A user's kubeconfig.
pub fn render_user(o: &UserOptions<'_>) -> Result<String, KubeconfigError> {
    let login_url = crate::credential::login_url(o.login_url)
        .map_err(|e| KubeconfigError::UserLogin(e.to_string()))?;
    let host = cluster_host(o.cluster_server)?;
    let name = o.name.unwrap_or(&host);
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(KubeconfigError::Name);
    }
    let cluster_ca = if o.embed {
        format!(
            "certificate-authority-data: {}",
            base64::engine::general_purpose::STANDARD.encode(read(o.cluster_ca_file)?)
        )
    } else {
        format!(
            "certificate-authority: {}",
            yaml_quote(&absolute(o.cluster_ca_file)?)
        )
    };
    let user = format!("{name}-ldap");
    let uses = if o.jwt {
        "exchanges the token it was issued for short-lived JWTs"
    } else {
        "uses the token it was issued"
    };
    let mut lines = vec![
        format!(
            "# kubectl logs in at {} once and then {uses};",
            login_url.as_str()
        ),
        "# needs kube-ldap-webhook on the PATH (kube-ldap-webhook credential).".to_string(),
        "apiVersion: v1".into(),
        "kind: Config".into(),
        "clusters:".into(),
        format!("- name: {}", yaml_quote(name)),
        "  cluster:".into(),
        format!("    server: {}", yaml_quote(o.cluster_server)),
        format!("    {cluster_ca}"),
        "users:".into(),
        format!("- name: {}", yaml_quote(&user)),
        "  user:".into(),
        "    exec:".into(),
        "      apiVersion: client.authentication.k8s.io/v1".into(),
        format!("      command: {}", yaml_quote(o.command)),
        "      args:".into(),
        "      - credential".into(),
    ];
    for arg in plugin_args(o, login_url.as_str())? {
        lines.push(format!("      - {}", yaml_quote(&arg)));
    }
    lines.extend([
        "      interactiveMode: IfAvailable".to_string(),
        "      provideClusterInfo: false".into(),
        format!(
            "      installHint: {}",
            yaml_quote(
                "kube-ldap-webhook logs you in to this cluster: install it and put it on your PATH \
                 (ask the cluster's administrators where to get it)"
            )
        ),
        "contexts:".into(),
        format!("- name: {}", yaml_quote(name)),
        "  context:".into(),
        format!("    cluster: {}", yaml_quote(name)),
        format!("    user: {}", yaml_quote(&user)),
        format!("current-context: {}", yaml_quote(name)),
    ]);
    Ok(lines.join("\n") + "\n")
}
