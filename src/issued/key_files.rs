//! Who may read or replace a key file, judged as ssh judges a private key. Whoever reads
//! the signing key, or replaces it or a verification key, issues tokens for anyone: such a
//! file is refused (at start, at reload and by check-config), never used with a warning.
//!
//! - A signing key: not readable by others, not writable by group or others. The README's
//!   `0640` with the service's group is fine.
//! - A verification key: not writable by others.
//! - Either: no directory above it writable by others, unless sticky (`/tmp`: others may
//!   not rename over a file they do not own there).
//!
//! The mode is read from the open file and the text from the same descriptor, so the file
//! judged is the file used.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// Why a key file could not be used; the message names the file, never the key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file holds something other than what was asked for.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: &'static str,
    },
    /// Others may read a signing key, or replace a key.
    #[error("{what} {path} has mode {mode:04o}: {why} (chmod {fix:04o})")]
    Mode {
        /// `signing key` or `verification key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
        /// Who may do what they must not.
        why: &'static str,
        /// The mode to set instead.
        fix: u32,
    },
    /// Others may replace a key in a directory above it.
    #[error(
        "{what} {path}: its directory {dir} has mode {mode:04o}: others could put their own key \
         in its place (chmod o-w {dir})"
    )]
    Directory {
        /// `signing key` or `verification key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The directory.
        dir: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// `keygen` found a file it would overwrite.
    #[error("{path} exists; keygen never overwrites a key (move it away first)")]
    Exists {
        /// The file.
        path: PathBuf,
    },
}

/// Which key a file holds: what it is called in messages and which modes are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Signing,
    Verification,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Signing => "signing key",
            Kind::Verification => "verification key",
        }
    }

    /// What is wrong with a file of this kind with `mode`, and the mode to set instead.
    fn judge(self, mode: u32) -> Option<(&'static str, u32)> {
        match self {
            Kind::Signing if mode & 0o004 != 0 => {
                Some(("it must not be readable by others", mode & 0o740))
            }
            Kind::Signing if mode & 0o022 != 0 => {
                Some(("it must not be writable by group or others", mode & 0o740))
            }
            Kind::Verification if mode & 0o002 != 0 => {
                Some(("it must not be writable by others", mode & 0o755))
            }
            _ => None,
        }
    }
}

/// The text of the key file at `path`, after the checks above.
pub(crate) fn read(path: &Path, kind: Kind) -> Result<Zeroizing<String>, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    // Non-blocking: a FIFO put where the key belongs must not hang a start or a reload.
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(KeyError::Invalid {
            path: path.to_path_buf(),
            message: "not a regular file",
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if let Some((why, fix)) = kind.judge(mode) {
        return Err(KeyError::Mode {
            what: kind.name(),
            path: path.to_path_buf(),
            mode,
            why,
            fix,
        });
    }
    check_directories(path, kind)?;
    read_all(&mut file).map_err(io).and_then(|bytes| {
        let text = std::str::from_utf8(&bytes).map_err(|_| KeyError::Invalid {
            path: path.to_path_buf(),
            message: "not a PEM file",
        })?;
        Ok(Zeroizing::new(text.to_string()))
    })
}

fn read_all(file: &mut File) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let mut bytes = Zeroizing::new(Vec::new());
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Every directory above the file, as named and after symlinks are resolved: one writable
/// by others lets them put their own key in its place.
fn check_directories(path: &Path, kind: Kind) -> Result<(), KeyError> {
    let named = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| named.clone());
    let mut dirs: Vec<PathBuf> = named.ancestors().skip(1).map(Path::to_path_buf).collect();
    dirs.extend(real.ancestors().skip(1).map(Path::to_path_buf));
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        let Ok(meta) = std::fs::metadata(&dir) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o7777;
        let sticky = mode & 0o1000 != 0;
        if mode & 0o002 != 0 && !sticky {
            return Err(KeyError::Directory {
                what: kind.name(),
                path: path.to_path_buf(),
                dir,
                mode,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Kind;

    #[test]
    fn a_signing_key_may_be_read_by_the_services_group_only() {
        assert_eq!(Kind::Signing.judge(0o600), None);
        assert_eq!(Kind::Signing.judge(0o640), None);
        assert_eq!(Kind::Signing.judge(0o400), None);
        let refused = |m| Kind::Signing.judge(m).map(|(_, fix)| fix);
        assert_eq!(refused(0o644), Some(0o640));
        assert_eq!(refused(0o604), Some(0o600));
        assert_eq!(refused(0o660), Some(0o640));
        assert_eq!(refused(0o602), Some(0o600));
        assert_eq!(refused(0o666), Some(0o640));
    }

    #[test]
    fn a_verification_key_may_be_read_by_anyone_and_written_by_no_other() {
        assert_eq!(Kind::Verification.judge(0o644), None);
        assert_eq!(Kind::Verification.judge(0o664), None);
        let fix = Kind::Verification.judge(0o666).map(|(_, fix)| fix);
        assert_eq!(fix, Some(0o644));
    }
}
