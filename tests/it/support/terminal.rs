//! A real terminal for a child process (util-linux `script`), typed into as a person
//! would: each answer only once its prompt is on the screen.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub struct Terminal {
    child: Child,
    stdin: Option<ChildStdin>,
    screen: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
}

impl Terminal {
    /// Runs the shell command line `inner` on a terminal of its own; `configure` sets the
    /// environment of `script` (and so of `inner`).
    pub fn start(inner: &str, configure: impl FnOnce(&mut Command)) -> Terminal {
        let mut cmd = Command::new("script");
        cmd.args(["-qec", inner, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        configure(&mut cmd);
        let mut child = cmd.spawn().expect("script (util-linux)");
        let screen = Arc::new(Mutex::new(Vec::new()));
        let mut stdout = child.stdout.take().unwrap();
        let reader = {
            let screen = screen.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = stdout.read(&mut buf) {
                    screen.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            })
        };
        Terminal {
            stdin: child.stdin.take(),
            child,
            screen,
            reader: Some(reader),
        }
    }

    /// Everything the terminal has shown so far.
    pub fn shown(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    /// Waits for `prompt` on the screen, then types `line` and Enter.
    pub fn answer(&mut self, prompt: &str, line: &str) {
        super::wait_until(
            || self.shown().contains(prompt),
            || format!("no prompt {prompt:?}: {}", self.shown()),
        );
        let stdin = self.stdin.as_mut().expect("the terminal is still open");
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
    }

    /// Closes the keyboard, waits for the command to end and returns how it ended and the
    /// whole screen.
    pub fn finish(mut self) -> (ExitStatus, String) {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        (status, self.shown())
    }
}
