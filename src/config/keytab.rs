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
