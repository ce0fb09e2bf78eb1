//! `[log]`.

use super::defaults as d;
use super::raw::RawLog;
use super::{ConfigError, Ctx, Log};

pub(super) fn resolve(l: RawLog, cx: &Ctx) -> Result<Log, ConfigError> {
    let level = l.level.unwrap_or_else(|| d::LOG_LEVEL.into());
    if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
        return Err(cx.invalid(
            "log.level",
            format!("`{level}` is not a log level or filter"),
        ));
    }
    Ok(Log {
        level,
        format: l.format,
    })
}
