use super::super::tests::{minimal, write};
use super::super::{load, parse_size};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The error of loading the minimal config plus `[audit]` `lines`.
fn refused(lines: &str) -> Result<String, Box<dyn std::error::Error>> {
    let d = tempfile::tempdir()?;
    let body = format!("{}\n[audit]\n{lines}\n", minimal(d.path()));
    match load(&write(d.path(), &body)) {
        Ok(_) => Err(format!("accepted: {lines}").into()),
        Err(e) => Ok(e.to_string()),
    }
}

#[test]
fn sizes_take_binary_units_and_refuse_anything_else() {
    assert_eq!(parse_size("4096"), Some(4096));
    assert_eq!(parse_size("512KiB"), Some(512 << 10));
    assert_eq!(parse_size(" 100 MiB "), Some(100 << 20));
    assert_eq!(parse_size("1G"), Some(1 << 30));
    for bad in [
        "",
        "MiB",
        "-1KiB",
        "1.5MiB",
        "12 parsecs",
        "99999999999999999999GiB",
    ] {
        assert_eq!(parse_size(bad), None, "{bad:?}");
    }
}

#[test]
fn off_by_default_and_the_defaults_when_on() -> TestResult {
    let d = tempfile::tempdir()?;
    let c = load(&write(d.path(), &minimal(d.path())))?;
    assert_eq!(c.audit.file, None);
    let file = d.path().join("audit.log");
    let body = format!("{}\n[audit]\nfile = {:?}\n", minimal(d.path()), file);
    let c = load(&write(d.path(), &body))?;
    assert_eq!(c.audit.file.as_deref(), Some(file.as_path()));
    assert_eq!((c.audit.max_size, c.audit.max_files), (100 << 20, 10));
    assert!(c.audit.personal_data && !c.audit.cache_hits);
    Ok(())
}

#[test]
fn bad_values_are_refused_naming_the_key() -> TestResult {
    for (lines, key) in [
        ("max_size = \"12 parsecs\"", "max_size"),
        ("max_size = \"1KiB\"", "audit.max_size"),
        ("max_size = -1", "max_size"),
        ("max_files = 0", "audit.max_files"),
        ("queue = 0", "audit.queue"),
        ("file = \"audit.log\"", "audit.file"),
        ("personal_data = \"no\"", "personal_data"),
    ] {
        let e = refused(lines)?;
        assert!(e.contains(key) && e.contains("config.toml"), "{lines}: {e}");
    }
    Ok(())
}
