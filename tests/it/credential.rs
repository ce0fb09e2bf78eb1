//! `kube-ldap-webhook credential`, the kubectl exec plugin, run as kubectl runs it.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::support;
use crate::support::terminal::Terminal;
use crate::support::TestResult;
use base64::Engine;

const PASSWORD_FILE: &str = "KUBE_LDAP_WEBHOOK_PASSWORD_FILE";

fn exec_info(version: &str, interactive: bool) -> String {
    format!(
        r#"{{"apiVersion":"client.authentication.k8s.io/{version}","kind":"ExecCredential","spec":{{"interactive":{interactive}}}}}"#
    )
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(support::bin())
        .arg("credential")
        .args(args)
        .env_remove("KUBE_LDAP_WEBHOOK_USERNAME")
        .env_remove(PASSWORD_FILE)
        .env_remove("KUBERNETES_EXEC_INFO")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn password_file(dir: &std::path::Path, pw: &str) -> String {
    let p = dir.join("pw");
    std::fs::write(&p, format!("{pw}\n")).unwrap();
    p.display().to_string()
}

fn decoded_token(out: &Output) -> (serde_json::Value, String) {
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let t = v["status"]["token"].as_str().unwrap().to_string();
    let plain = base64::engine::general_purpose::STANDARD
        .decode(&t)
        .unwrap();
    (v, String::from_utf8(plain).unwrap())
}

#[test]
fn answers_v1_with_the_token_of_username_and_password_file() {
    let d = tempfile::tempdir().unwrap();
    let pw = password_file(d.path(), "pa:ss wörd");
    let out = run(
        &["--username", "alice", "--password-file", &pw],
        &[("KUBERNETES_EXEC_INFO", &exec_info("v1", false))],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (v, plain) = decoded_token(&out);
    assert_eq!(v["apiVersion"], "client.authentication.k8s.io/v1");
    assert_eq!(v["kind"], "ExecCredential");
    assert_eq!(plain, "alice:pa:ss wörd");
    assert!(!v["status"]["token"].as_str().unwrap().contains(' '));
}

#[test]
fn answers_in_v1beta1_when_asked_in_v1beta1() {
    let d = tempfile::tempdir().unwrap();
    let pw = password_file(d.path(), "x");
    let out = run(
        &["--password-file", &pw],
        &[
            ("KUBERNETES_EXEC_INFO", &exec_info("v1beta1", false)),
            ("KUBE_LDAP_WEBHOOK_USERNAME", "bob"),
        ],
    );
    assert!(out.status.success());
    let (v, plain) = decoded_token(&out);
    assert_eq!(v["apiVersion"], "client.authentication.k8s.io/v1beta1");
    assert_eq!(plain, "bob:x", "username from KUBE_LDAP_WEBHOOK_USERNAME");
}

#[test]
fn reads_the_password_from_a_file_descriptor() {
    use std::os::fd::AsRawFd;
    let (r, mut w) = std::io::pipe().unwrap();
    w.write_all(b"from-a-pipe\n").unwrap();
    drop(w);
    let fd = r.as_raw_fd();
    let mut cmd = Command::new(support::bin());
    cmd.args([
        "credential",
        "--username",
        "alice",
        "--password-fd",
        &fd.to_string(),
    ])
    .env("KUBERNETES_EXEC_INFO", exec_info("v1", false))
    .stdin(Stdio::null());
    // The pipe's read end is inherited: clear close-on-exec for it in the child.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            libc::fcntl(fd, libc::F_SETFD, 0);
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(decoded_token(&out).1, "alice:from-a-pipe");
}

#[test]
fn a_run_without_what_it_needs_fails_naming_it_with_nothing_on_stdout() {
    // The arguments, KUBERNETES_EXEC_INFO, and what the error names.
    let alice: &[&str] = &["--username", "alice"];
    let runs = [
        (&[][..], exec_info("v1", false), "--username"),
        (alice, exec_info("v1", false), "--password-file"),
        (alice, exec_info("v2", false), "apiVersion"),
        (alice, "{not json".to_string(), "KUBERNETES_EXEC_INFO"),
    ];
    for (args, info, names) in runs {
        let out = run(args, &[("KUBERNETES_EXEC_INFO", &info)]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} {info}");
        assert!(
            out.stdout.is_empty(),
            "{args:?} {info}: nothing on stdout for kubectl to misread"
        );
        assert!(stderr.contains(names), "{args:?} {info}: {stderr}");
    }
}

#[test]
fn a_password_on_the_command_line_is_refused() {
    let out = run(&["--username", "alice", "--password", "hunter2"], &[]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
}

#[test]
fn username_with_a_colon_and_empty_password_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let pw = password_file(d.path(), "x");
    let out = run(
        &["--username", "a:b", "--password-file", &pw],
        &[("KUBERNETES_EXEC_INFO", &exec_info("v1", false))],
    );
    assert!(!out.status.success());
    let empty = password_file(d.path(), "");
    let out = run(
        &["--username", "alice", "--password-file", &empty],
        &[("KUBERNETES_EXEC_INFO", &exec_info("v1", false))],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty"));
}

#[test]
fn interactive_use_prompts_on_the_terminal() {
    // `script` gives the plugin a real terminal, as kubectl does when interactive.
    let mut term = Terminal::start(&format!("{} credential", support::bin()), |c| {
        c.env("KUBERNETES_EXEC_INFO", exec_info("v1", true))
            .env_remove("KUBE_LDAP_WEBHOOK_USERNAME");
    });
    term.answer("Username: ", "alice");
    term.answer("Password for alice: ", "typed-secret");
    let (status, text) = term.finish();
    assert!(status.success(), "{text}");
    let expected = base64::engine::general_purpose::STANDARD.encode("alice:typed-secret");
    assert!(text.contains(&expected), "{text}");
}

// KUBE_LDAP_WEBHOOK_PASSWORD_FILE: what a script sets around kubectl, whose kubeconfig
// fixes the plugin's arguments.

/// A non-interactive v1 run with `args` and KUBE_LDAP_WEBHOOK_PASSWORD_FILE=`named`.
fn run_named(args: &[&str], named: &str) -> Output {
    run(
        args,
        &[
            ("KUBERNETES_EXEC_INFO", &exec_info("v1", false)),
            (PASSWORD_FILE, named),
        ],
    )
}

#[test]
fn reads_the_password_from_the_file_the_environment_names() -> TestResult {
    let d = tempfile::tempdir()?;
    let pw = password_file(d.path(), "from-the-environment");
    let out = run_named(&["--username", "alice"], &pw);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(decoded_token(&out).1, "alice:from-the-environment");
    Ok(())
}

#[test]
fn a_password_file_flag_wins_over_the_environment() -> TestResult {
    let d = tempfile::tempdir()?;
    let flagged = d.path().join("flagged");
    std::fs::write(&flagged, "from-the-flag\n")?;
    let named = password_file(d.path(), "from-the-environment");
    let out = run_named(
        &[
            "--username",
            "alice",
            "--password-file",
            &flagged.display().to_string(),
        ],
        &named,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(decoded_token(&out).1, "alice:from-the-flag");
    Ok(())
}

#[test]
fn a_missing_file_in_the_environment_fails_naming_it_with_nothing_on_stdout() -> TestResult {
    let d = tempfile::tempdir()?;
    let missing = d.path().join("no-such-password").display().to_string();
    let out = run_named(&["--username", "alice"], &missing);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(stderr.contains(&missing), "{stderr}");
    Ok(())
}

#[test]
fn an_empty_password_file_variable_counts_as_unset() {
    let out = run_named(&["--username", "alice"], "");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no password"), "{stderr}");
    assert!(stderr.contains(PASSWORD_FILE), "{stderr}");
}
