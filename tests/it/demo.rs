//! `make demo` (scripts/demo.sh): the commands it prints work as printed.

use std::process::{Command, Stdio};

use crate::support::terminal::Terminal;
use crate::support::*;

/// The block the demo prints after "and a review of the token it issues": the login
/// command (ISSUED=...) and the curl that reviews the issued token.
fn issued_review_block(shown: &str) -> String {
    shown
        .lines()
        .skip_while(|l| !l.starts_with("  ISSUED="))
        .take_while(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn demo_prints_a_login_whose_issued_token_its_review_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("demo.out");
    let out = std::fs::File::create(&out_path).unwrap();
    let mut demo = Process::spawn(
        Command::new(repo().join("scripts/demo.sh"))
            .env("KUBE_LDAP_WEBHOOK_BIN", bin())
            .env("DEMO_PORT", free_port().to_string())
            .env("DEMO_OPS_PORT", free_port().to_string())
            .env("DEMO_LOGIN_PORT", free_port().to_string())
            .env("DEMO_LDAP_PORT", free_port().to_string())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out),
        "scripts/demo.sh",
    );
    let shown = || std::fs::read_to_string(&out_path).unwrap_or_default();
    wait_until(|| shown().contains("Press Ctrl-C"), shown);
    let block = issued_review_block(&shown());
    assert!(block.contains("credential --username alice"), "{}", shown());

    let mut term = Terminal::start(&format!("{block}\necho \"issued=$ISSUED\""), |c| {
        c.env_remove("KUBE_LDAP_WEBHOOK_USERNAME");
    });
    term.answer("Password for alice: ", "alice-password");
    let (status, screen) = term.finish();

    assert!(status.success(), "{screen}");
    assert!(screen.contains("issued=v4.public."), "{screen}");
    assert!(screen.contains(r#""authenticated":true"#), "{screen}");
    assert!(screen.contains(r#""username":"alice""#), "{screen}");
    demo.signal(libc::SIGINT);
    assert!(demo.wait_exit(PATIENCE).is_some(), "{}", shown());
}
