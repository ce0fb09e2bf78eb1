//! `[audit]`: where audit events go and what they say.

use std::path::Path;

use super::defaults as d;
use super::raw::RawAudit;
use super::{invalid, Audit, Config, ConfigError, Ctx};

pub(super) fn resolve(a: RawAudit, cx: &Ctx) -> Result<Audit, ConfigError> {
    let file = a.file.filter(|f| !f.as_os_str().is_empty());
    if let Some(f) = &file {
        if !f.is_absolute() {
            return Err(cx.invalid(
                "audit.file",
                format!("`{}` must be an absolute path", f.display()),
            ));
        }
    }
    Ok(Audit {
        file,
        max_size: cx.limit(&d::AUDIT_MAX_SIZE, a.max_size.map(|s| s.0))?,
        max_files: cx.count(&d::AUDIT_MAX_FILES, a.max_files)?,
        queue: cx.count(&d::AUDIT_QUEUE, a.queue)?,
        personal_data: a.personal_data.unwrap_or(true),
        cache_hits: a.cache_hits.unwrap_or(false),
    })
}

/// The audit file can be appended to: an existing file is opened for appending (nothing is
/// written), a missing one needs a directory to be made in. `serve` then opens it for good,
/// creating it, and refuses to start when that fails, naming the key just the same.
pub(super) fn check_file(config: &Config) -> Result<(), ConfigError> {
    let Some(file) = &config.audit.file else {
        return Ok(());
    };
    let refuse = |why: String| invalid(&config.source, "audit.file".into(), why);
    if file.exists() {
        return std::fs::OpenOptions::new()
            .append(true)
            .open(file)
            .map(|_| ())
            .map_err(|e| refuse(format!("cannot append to {}: {e}", file.display())));
    }
    match file.parent().filter(|p| p.is_dir()) {
        Some(_) => Ok(()),
        None => Err(refuse(format!(
            "cannot create {}: {} is not a directory",
            file.display(),
            file.parent().unwrap_or(Path::new("/")).display()
        ))),
    }
}

#[cfg(test)]
mod tests;
