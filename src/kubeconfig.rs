//! The webhook kubeconfig for kube-apiserver's `--authentication-token-webhook-config-file`.

use std::path::Path;

use base64::Engine;

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("--server must be an https:// URL, got `{0}`")]
    Server(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub struct Options<'a> {
    pub server: &'a str,
    pub ca_file: &'a Path,
    pub client_cert: &'a Path,
    pub client_key: &'a Path,
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
