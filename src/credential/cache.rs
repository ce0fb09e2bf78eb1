//! The token cache of the credential plugin: `$XDG_CACHE_HOME/kube-ldap-webhook/` (else
//! `~/.cache/kube-ldap-webhook/`), a directory only its owner can enter, one file per login
//! URL and username holding the issued token (the session) and its expiry, never a
//! password; beside it, with `--jwt`, the JWT that session was exchanged for.
//!
//! Every run takes an exclusive lock on the slot's lock file around "read the cache, maybe
//! log in, write the cache": kubectl runs in parallel (a shell loop, a CI job, several
//! terminals) then log in once, and the others find the fresh token when they get the lock.

use std::ffi::OsString;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::process;

/// A cached token is used only while it stays valid for longer than this: a token about to
/// expire would fail in the middle of what kubectl is doing.
pub(crate) const REFRESH_MARGIN: time::Duration = time::Duration::minutes(5);

/// A cache file larger than this is not ours (a token is a few hundred bytes).
const MAX_FILE: u64 = 64 * 1024;

/// Why the token cache cannot be used; the message names the path.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("no place for the token cache: set HOME or XDG_CACHE_HOME to an absolute path")]
    /// Neither `XDG_CACHE_HOME` nor `HOME` is an absolute path.
    NoHome,
    #[error("token cache {path}: {source}")]
    /// A file or directory of the cache could not be used.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    #[error("token cache {path} {why}: refusing to use it (remove it, and a new one is made)")]
    /// Something in the cache's place that another user could have put there.
    Unsafe {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong with it.
        why: &'static str,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The cache directory as the XDG base directory specification places it; a relative
/// `XDG_CACHE_HOME` is ignored, as the specification says.
pub(crate) fn location(
    xdg_cache_home: Option<OsString>,
    home: Option<OsString>,
) -> Result<PathBuf, CacheError> {
    let absolute = |v: Option<OsString>| v.map(PathBuf::from).filter(|p| p.is_absolute());
    let base = match absolute(xdg_cache_home) {
        Some(p) => p,
        None => absolute(home).ok_or(CacheError::NoHome)?.join(".cache"),
    };
    Ok(base.join("kube-ldap-webhook"))
}

/// One entry: what `POST /login` (or `POST /token`) answered, and for which URL and
/// username.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Entry {
    pub(crate) token: Zeroizing<String>,
    /// RFC 3339, UTC.
    pub(crate) expiration_timestamp: String,
    pub(crate) login_url: String,
    pub(crate) username: String,
    /// When the token came, RFC 3339: a JWT's lifetime sets how early it is refreshed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) obtained: Option<String>,
}

fn rfc3339(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

impl Entry {
    pub(crate) fn expires(&self) -> Option<OffsetDateTime> {
        rfc3339(&self.expiration_timestamp)
    }

    pub(crate) fn obtained(&self) -> Option<OffsetDateTime> {
        self.obtained.as_deref().and_then(rfc3339)
    }
}

/// What to do with a cached token at `now`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Valid for long enough: ask the daemon whether it still accepts it, then use it.
    Check,
    /// Expired or about to: log in again.
    LogIn,
}

pub(crate) fn plan(expires: OffsetDateTime, now: OffsetDateTime) -> Plan {
    if expires - now > REFRESH_MARGIN {
        Plan::Check
    } else {
        Plan::LogIn
    }
}

/// The cache directory, created for its owner only.
pub(crate) struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// Opens (creating it 0700 when missing) the directory. A directory that is not ours or
    /// is a symlink is refused; one others may enter is closed to them first.
    pub(crate) fn open(dir: PathBuf) -> Result<Cache, CacheError> {
        if let Some(parent) = dir.parent() {
            // As the XDG specification asks for a missing $XDG_CACHE_HOME: 0700.
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(io(parent))?;
        }
        match DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(&dir)(e)),
        }
        let meta = std::fs::symlink_metadata(&dir).map_err(io(&dir))?;
        let unsafe_because = |why| CacheError::Unsafe {
            path: dir.clone(),
            why,
        };
        if !meta.is_dir() {
            return Err(unsafe_because("is not a directory"));
        }
        if meta.uid() != process::effective_uid() {
            return Err(unsafe_because("belongs to another user"));
        }
        if meta.mode() & 0o077 != 0 {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io(&dir))?;
        }
        Ok(Cache { dir })
    }

    /// The slot of a login URL and the username given on the command line ("" when the
    /// plugin asks for it: the slot then holds whoever logged in last at that URL).
    pub(crate) fn slot(&self, login_url: &str, username: &str) -> Slot {
        let digest = Sha256::digest(format!("{login_url}\n{username}").as_bytes());
        let name: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.named(&name[..32], login_url, username)
    }

    fn named(&self, name: &str, login_url: &str, username: &str) -> Slot {
        Slot {
            dir: self.dir.clone(),
            token: self.dir.join(format!("{name}.json")),
            jwt: self.dir.join(format!("{name}{JWT_SUFFIX}.json")),
            lock: self.dir.join(format!("{name}.lock")),
            login_url: login_url.to_string(),
            username: username.to_string(),
        }
    }

    /// Forgets every token of `login_url` (of `username` only, when given), whichever
    /// slot holds it: the one named with the username and the one of runs that asked for
    /// it alike.
    pub(crate) fn forget_all(
        &self,
        login_url: &str,
        username: Option<&str>,
    ) -> Result<(), CacheError> {
        let entries = std::fs::read_dir(&self.dir).map_err(io(&self.dir))?;
        for dirent in entries {
            let name = dirent.map_err(io(&self.dir))?.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if stem.starts_with('.') {
                continue;
            }
            // A JWT file names its session's slot.
            let stem = stem.strip_suffix(JWT_SUFFIX).unwrap_or(stem);
            // Under the slot's lock, so that a login in progress is not half undone.
            let slot = self.named(stem, login_url, username.unwrap_or(""));
            let held = slot.lock(|| {})?;
            for kind in [Kind::Session, Kind::Jwt] {
                if held.load(kind)?.is_some() {
                    held.forget(kind)?;
                }
            }
        }
        Ok(())
    }
}

/// The JWT file of a slot is the session's name with this before `.json`.
const JWT_SUFFIX: &str = ".jwt";

/// Which of a slot's two tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The issued token of a login.
    Session,
    /// The JWT `POST /token` exchanged it for.
    Jwt,
}

/// Where one login URL and username keep their tokens.
pub(crate) struct Slot {
    dir: PathBuf,
    token: PathBuf,
    jwt: PathBuf,
    lock: PathBuf,
    login_url: String,
    username: String,
}

/// What is wrong with something in the place of a cache file, if anything.
fn not_ours(meta: &std::fs::Metadata) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let kind = meta.file_type();
    let why = if kind.is_fifo() {
        "is a FIFO, not a file"
    } else if kind.is_socket() {
        "is a socket, not a file"
    } else if kind.is_block_device() || kind.is_char_device() {
        "is a device, not a file"
    } else if kind.is_dir() {
        "is a directory, not a file"
    } else if !kind.is_file() {
        "is not a file"
    } else if meta.uid() != process::effective_uid() {
        "belongs to another user"
    } else {
        return None;
    };
    Some(why)
}

/// Opens a file of the cache without following a symlink; the file must be ours.
/// `O_NONBLOCK` keeps a FIFO (or a device) in the file's place from holding the run in
/// `open` until a writer comes: it is opened at once, seen for what it is and refused
/// (`O_NOCTTY`: a terminal there never becomes ours). On the regular file that passes, the
/// flag changes nothing (Linux ignores it for files).
fn open_own(path: &Path, options: &mut OpenOptions) -> Result<Option<File>, CacheError> {
    let file = match options
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(CacheError::Unsafe {
                path: path.to_path_buf(),
                why: "is a symlink",
            })
        }
        // A socket cannot be opened at all: say what it is rather than "no such device".
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
            let why = std::fs::symlink_metadata(path).ok();
            return Err(match why.as_ref().and_then(not_ours) {
                Some(why) => CacheError::Unsafe {
                    path: path.to_path_buf(),
                    why,
                },
                None => io(path)(e),
            });
        }
        Err(e) => return Err(io(path)(e)),
    };
    let meta = file.metadata().map_err(io(path))?;
    match not_ours(&meta) {
        Some(why) => Err(CacheError::Unsafe {
            path: path.to_path_buf(),
            why,
        }),
        None => Ok(Some(file)),
    }
}

impl Slot {
    /// Takes the slot's lock, waiting for another run that holds it; `on_wait` is called
    /// once before waiting.
    pub(crate) fn lock(&self, on_wait: impl FnOnce()) -> Result<Held<'_>, CacheError> {
        let file = open_own(
            &self.lock,
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .mode(0o600),
        )?
        .ok_or_else(|| io(&self.lock)(std::io::ErrorKind::NotFound.into()))?;
        if !process::lock_exclusive(&file, false).map_err(io(&self.lock))? {
            on_wait();
            process::lock_exclusive(&file, true).map_err(io(&self.lock))?;
        }
        Ok(Held {
            slot: self,
            _lock: file,
        })
    }
}

/// A slot whose lock this process holds (until dropped).
pub(crate) struct Held<'a> {
    slot: &'a Slot,
    _lock: File,
}

impl Held<'_> {
    fn path(&self, kind: Kind) -> &Path {
        match kind {
            Kind::Session => &self.slot.token,
            Kind::Jwt => &self.slot.jwt,
        }
    }

    /// The cached entry, if there is one for this URL and username. A file that does not
    /// parse or belongs to another URL is as good as none: the next login replaces it.
    pub(crate) fn load(&self, kind: Kind) -> Result<Option<Entry>, CacheError> {
        let path = self.path(kind);
        let Some(file) = open_own(path, OpenOptions::new().read(true))? else {
            return Ok(None);
        };
        let mut text = Zeroizing::new(Vec::new());
        file.take(MAX_FILE + 1)
            .read_to_end(&mut text)
            .map_err(io(path))?;
        let Ok(entry) = serde_json::from_slice::<Entry>(&text) else {
            return Ok(None);
        };
        let ours = entry.login_url == self.slot.login_url
            && (self.slot.username.is_empty() || entry.username == self.slot.username)
            && super::login::plausible_token(&entry.token)
            && entry.expires().is_some();
        Ok(ours.then_some(entry))
    }

    /// Replaces the entry in one rename: a reader sees the old file or the new one, never
    /// half of one, and the token is never readable by anyone else.
    pub(crate) fn store(&self, kind: Kind, entry: &Entry) -> Result<(), CacheError> {
        let path = self.path(kind);
        let text = Zeroizing::new(serde_json::to_vec(entry).map_err(|e| io(path)(e.into()))?);
        let tmp = self.slot.dir.join(format!(
            ".{}.{}.{:016x}.tmp",
            path.file_stem().unwrap_or_default().to_string_lossy(),
            std::process::id(),
            rand::random::<u64>()
        ));
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .and_then(|mut f| f.write_all(&text).and_then(|_| f.sync_all()))
            .and_then(|_| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(path)(e));
        }
        // The rename itself lasts only once the directory is on disk; losing it in a crash
        // costs one login, so a failure here is not worth an error.
        if let Ok(d) = File::open(&self.slot.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Deletes the entry; none is fine.
    pub(crate) fn forget(&self, kind: Kind) -> Result<(), CacheError> {
        let path = self.path(kind);
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(path)(e)),
        }
    }
}

#[cfg(test)]
mod tests;
