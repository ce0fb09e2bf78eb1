//! `login.keytab_file` and `login.replay_cache_file`: the Kerberos acceptor of the login
//! endpoint. The keytab is a secret like the bind password (a relative path is looked up in
//! `$CREDENTIALS_DIRECTORY`); a keytab others may read is refused, since anyone holding it
//! can mint tickets for the service. The credential is acquired here, so check-config, a
//! start and a reload all refuse a keytab GSSAPI cannot use, naming the key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{ConfigError, Ctx};
use crate::negotiate::gss::Keytab;

/// The replay cache's file name in systemd's `StateDirectory=` (`$STATE_DIRECTORY`).
const REPLAY_CACHE_NAME: &str = "negotiate.rcache2";

pub(super) fn resolve(
    keytab: Option<&Path>,
    replay_cache: Option<&Path>,
    config_dir: &Path,
    cx: &mut Ctx,
) -> Result<Option<Arc<Keytab>>, ConfigError> {
    let Some(keytab) = keytab else {
        if replay_cache.is_some() {
            return Err(cx.invalid(
                "login.replay_cache_file",
                "only means something with login.keytab_file",
            ));
        }
        return Ok(None);
    };
    let path = super::password_file::secret_path(keytab, config_dir);
    check_keytab_file(&path, cx).map_err(|m| cx.invalid("login.keytab_file", m))?;
    let replay_cache = replay_cache_path(replay_cache, config_dir);
    if let Some(rc) = &replay_cache {
        let dir = rc.parent().unwrap_or(Path::new("/"));
        if !dir.is_dir() {
            return Err(cx.invalid(
                "login.replay_cache_file",
                format!("the directory {} does not exist", dir.display()),
            ));
        }
    }
    let acceptor = Keytab::acquire(&path, replay_cache.as_deref())
        .map_err(|e| cx.invalid("login.keytab_file", e.to_string()))?;
    Ok(Some(Arc::new(acceptor)))
}

/// The key's value (relative: next to the config), else `$STATE_DIRECTORY/negotiate.rcache2`
/// under systemd, else `None`: MIT's default (`/var/tmp/krb5_<euid>.rcache2`).
fn replay_cache_path(value: Option<&Path>, config_dir: &Path) -> Option<PathBuf> {
    match value {
        Some(p) if p.is_relative() => Some(config_dir.join(p)),
        Some(p) => Some(p.to_path_buf()),
        None => std::env::var_os("STATE_DIRECTORY").map(|d| Path::new(&d).join(REPLAY_CACHE_NAME)),
    }
}

/// Readable, a keytab (MIT's format starts 0x05 0x02, Heimdal's old one 0x05 0x01), and
/// not readable by others; readable by the group is a warning, as for the bind password.
fn check_keytab_file(path: &Path, cx: &mut Ctx) -> Result<(), String> {
    use std::io::Read;
    let mut head = [0u8; 2];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if head != [5, 2] && head != [5, 1] {
        return Err(format!("{} is not a keytab", path.display()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o004 != 0 {
            return Err(format!(
                "{} is readable by everyone: whoever reads it can pose as the service; chmod 600 it",
                path.display()
            ));
        }
        if mode & 0o040 != 0 {
            cx.warn(format!(
                "{}: the keytab is readable by its group; chmod 600 it",
                path.display()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::super::tests::{minimal, write};
    use super::super::{load, Preset};
    use super::*;

    /// A config with a login endpoint, `login` lines in `[login]` and `user` lines in
    /// `[ldap.user]`.
    fn load_with(dir: &Path, login: &str, user: &str) -> Result<super::super::Config, String> {
        crate::issued::keys::keygen(&dir.join("keys")).unwrap();
        let key = dir.join("keys").join(crate::issued::keys::SIGNING_KEY);
        let body = format!(
            "{}{user}\n[login]\nlisten = \"127.0.0.1:0\"\n{login}\n[tokens]\nsigning_key_file = \"{}\"\n",
            minimal(dir),
            key.display()
        );
        load(&write(dir, &body)).map_err(|e| e.to_string())
    }

    /// A file that starts like a keytab (version 0x0502) and holds no key, with `mode`.
    fn keytab(dir: &Path, mode: u32) -> PathBuf {
        let f = dir.join("http.keytab");
        std::fs::write(&f, [5, 2]).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
        f
    }

    const MAPPED: &str = "kerberos_filter = \"(krbPrincipalName={principal})\"\n\
                          domains = [\"EXAMPLE.TEST\"]";

    #[test]
    fn a_keytab_everyone_can_read_is_refused_naming_the_key() {
        let d = tempfile::tempdir().unwrap();
        let k = keytab(d.path(), 0o644);
        let e = load_with(d.path(), &format!("keytab_file = {k:?}"), MAPPED).unwrap_err();
        assert!(
            e.contains("login.keytab_file") && e.contains("readable by everyone"),
            "{e}"
        );
    }

    #[test]
    fn a_file_that_is_no_keytab_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let k = d.path().join("not-a-keytab");
        std::fs::write(&k, "hello").unwrap();
        let e = load_with(d.path(), &format!("keytab_file = {k:?}"), MAPPED).unwrap_err();
        assert!(
            e.contains("login.keytab_file") && e.contains("is not a keytab"),
            "{e}"
        );
    }

    #[test]
    fn a_keytab_without_keys_is_refused_by_gssapi() {
        let d = tempfile::tempdir().unwrap();
        let k = keytab(d.path(), 0o600);
        let e = load_with(d.path(), &format!("keytab_file = {k:?}"), MAPPED).unwrap_err();
        assert!(
            e.contains("login.keytab_file") && e.contains("cannot use the keytab"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_keytab_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let e = load_with(
            d.path(),
            "keytab_file = \"/nonexistent/http.keytab\"",
            MAPPED,
        )
        .unwrap_err();
        assert!(
            e.contains("login.keytab_file") && e.contains("cannot read"),
            "{e}"
        );
    }

    #[test]
    fn a_keytab_needs_the_login_endpoint() {
        let d = tempfile::tempdir().unwrap();
        let k = keytab(d.path(), 0o600);
        let body = format!(
            "{}{MAPPED}\n[login]\nkeytab_file = {k:?}\n",
            minimal(d.path())
        );
        let e = load(&write(d.path(), &body)).unwrap_err().to_string();
        assert!(
            e.contains("login.keytab_file") && e.contains("login.listen"),
            "{e}"
        );
    }

    #[test]
    fn a_replay_cache_without_a_keytab_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let e = load_with(d.path(), "replay_cache_file = \"/tmp/rc\"", "").unwrap_err();
        assert!(e.contains("login.replay_cache_file"), "{e}");
    }

    #[test]
    fn a_kerberos_filter_needs_a_placeholder() {
        let d = tempfile::tempdir().unwrap();
        let e = load_with(d.path(), "", "kerberos_filter = \"(uid=alice)\"").unwrap_err();
        assert!(e.contains("ldap.user.kerberos_filter"), "{e}");
    }

    #[test]
    fn presets_with_a_principal_attribute_bring_a_kerberos_filter() {
        use super::super::presets::preset_defaults;
        let ad = preset_defaults(Preset::ActiveDirectory).unwrap();
        assert!(ad
            .kerberos_filter
            .unwrap()
            .contains("userPrincipalName={principal}"));
        let ipa = preset_defaults(Preset::Freeipa).unwrap();
        assert!(ipa
            .kerberos_filter
            .unwrap()
            .contains("krbPrincipalName={principal}"));
        assert!(preset_defaults(Preset::Openldap)
            .unwrap()
            .kerberos_filter
            .is_none());
    }
}
