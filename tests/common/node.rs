//! Real npm packages in tests: `npm ci` once from the committed lock file, then a Node script
//! started on loopback, which announces where it listens with one line on stdout.
//!
//! Without Node.js the callers skip (with a message), except under `CI=true`, where they fail.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A Node.js child process, killed when dropped.
pub struct NodeProcess {
    child: Child,
    /// What followed the announced prefix on the line the script printed.
    pub announced: String,
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tests/NAME` in this crate.
pub fn package_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(name)
}

/// Installs `tests/NAME`'s locked dependencies with `npm ci` unless `node_modules/MARKER` exists.
/// `None` (skip) when Node.js is missing, except under `CI=true`.
pub fn prepare(name: &str, marker: &str) -> Option<PathBuf> {
    let dir = package_dir(name);
    if Command::new("node").arg("--version").output().is_err() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("Node.js is required under CI=true for the tests in tests/{name}");
        }
        eprintln!("SKIPPED: node is not installed; set CI=true to make this fail");
        return None;
    }
    // Both backends' tests run in one binary at once: one `npm ci` at a time, or the second
    // would delete the first one's node_modules under its feet.
    static NPM: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = NPM.lock().unwrap_or_else(|e| e.into_inner());
    if !dir.join("node_modules").join(marker).exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm");
        assert!(status.success(), "npm ci failed in {}", dir.display());
    }
    Some(dir)
}

/// Starts `node SCRIPT` in `dir` with `env` and waits up to `timeout` for a stdout line starting
/// with `prefix`. Blocking: call it from `spawn_blocking` in async tests.
pub fn start(
    dir: &Path,
    script: &str,
    env: &[(&str, String)],
    prefix: &str,
    timeout: Duration,
) -> NodeProcess {
    let mut command = Command::new("node");
    command
        .arg(script)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("node");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut process = NodeProcess {
        child,
        announced: String::new(),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let prefix = prefix.to_owned();
    // Reads every line, so the child never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(rest) = line.strip_prefix(&prefix) {
                let _ = tx.send(rest.trim().to_owned());
            }
        }
    });
    match rx.recv_timeout(timeout) {
        Ok(announced) => process.announced = announced,
        // `process` is dropped on the way out: the child is killed.
        Err(e) => panic!(
            "node {script} in {} did not announce itself within {timeout:?} ({e})",
            dir.display()
        ),
    }
    process
}
