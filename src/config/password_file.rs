//! The bind password file.

use std::path::{Path, PathBuf};

use crate::secret::Password;

/// Where a secret file named in the config is: a relative path in systemd's
/// `$CREDENTIALS_DIRECTORY` when there is one, else next to the config file.
pub(crate) fn secret_path(file: &Path, config_dir: &Path) -> PathBuf {
    if file.is_relative() {
        match std::env::var_os("CREDENTIALS_DIRECTORY") {
            Some(dir) => Path::new(&dir).join(file),
            None => config_dir.join(file),
        }
    } else {
        file.to_path_buf()
    }
}

/// Reads a secret file. A relative path is looked up in systemd's `$CREDENTIALS_DIRECTORY`
/// (`LoadCredential=`) when there is one, else next to the config file, so the same config
/// works under the hardened unit and when run by hand. One trailing newline is dropped; the
/// content is never echoed. Also returns a warning when others may read the file.
pub(crate) fn read_password_file(
    file: &Path,
    config_dir: &Path,
) -> Result<(Password, Option<String>), String> {
    let resolved = secret_path(file, config_dir);
    let bytes = zeroize::Zeroizing::new(
        std::fs::read(&resolved).map_err(|e| format!("cannot read {}: {e}", resolved.display()))?,
    );
    let mut warning = None;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(&resolved) {
            if meta.permissions().mode() & 0o044 != 0 {
                warning = Some(format!(
                    "{}: the bind password file is readable by group or others; chmod 600 it",
                    resolved.display()
                ));
            }
        }
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| format!("{} is not UTF-8 text", resolved.display()))?;
    let text = text.strip_suffix('\n').unwrap_or(text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    if text.is_empty() {
        return Err(format!("{} is empty", resolved.display()));
    }
    Ok((Password::new(text.to_string()), warning))
}
