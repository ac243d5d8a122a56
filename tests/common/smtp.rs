//! The SMTP test server (tests/smtp/smtp_server.py: aiosmtpd requiring STARTTLS and
//! AUTH) with a test CA of its own, and the standard library's email parser
//! (tests/smtp/read_mail.py) to read what it received.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::{TestPki, announced_port, eventually, repo_path};

/// The venv's python that runs the SMTP server (scripts/test makes it).
pub fn smtp_python() -> PathBuf {
    std::env::var("CLW_TEST_SMTP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_path("tests/smtp/.venv/bin/python"))
}

/// The SMTP server on a free loopback port, writing what it accepts into a folder of
/// its own; stopped when dropped (killed, and its stdin closed).
pub struct SmtpServer {
    child: std::process::Child,
    pub port: u16,
    pub ca: TestPki,
    mail: tempfile::TempDir,
}

impl SmtpServer {
    /// Requires STARTTLS, then AUTH as `user` / `password`.
    pub async fn start(user: &str, password: &str) -> SmtpServer {
        Self::start_with(user, password, false).await
    }

    /// TLS from the first byte (as on port 465), then AUTH as `user` / `password`.
    pub async fn start_implicit(user: &str, password: &str) -> SmtpServer {
        Self::start_with(user, password, true).await
    }

    async fn start_with(user: &str, password: &str, implicit: bool) -> SmtpServer {
        let python = smtp_python();
        assert!(
            python.exists(),
            "the SMTP test server is not installed: run scripts/test (it makes tests/smtp/.venv)"
        );
        let ca = TestPki::new();
        let mail = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(python)
            .arg(repo_path("tests/smtp/smtp_server.py"))
            .arg("--cert")
            .arg(ca.path("server.pem"))
            .arg("--key")
            .arg(ca.path("server.key"))
            .args(["--user", user, "--password", password, "--dir"])
            .arg(mail.path())
            .args(implicit.then_some("--implicit-tls"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python runs");
        let port = announced_port(&mut child, "ready ", "the SMTP server").await;
        SmtpServer {
            child,
            port,
            ca,
            mail,
        }
    }

    /// The CA the server's certificate chains to (the gateway's `ca_file`).
    pub fn ca_file(&self) -> PathBuf {
        self.ca.path("ca.pem")
    }

    /// The messages received so far, in the order they arrived.
    pub fn messages(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = std::fs::read_dir(self.mail.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        out.sort();
        out
    }

    /// Waits (up to `within`) until `n` messages have arrived.
    pub async fn wait_messages(&self, n: usize, within: Duration) -> Vec<PathBuf> {
        eventually(&format!("{n} emails received"), within, || async {
            let m = self.messages();
            (m.len() >= n).then_some(m)
        })
        .await
    }

    /// The next message is written, then its connection closed without an answer.
    pub fn drop_next_answer(&self) {
        std::fs::write(self.mail.path().join(".drop-after-data"), b"").unwrap();
    }

    /// The next message is refused with a 451.
    pub fn refuse_next(&self) {
        std::fs::write(self.mail.path().join(".refuse-data-4xx"), b"").unwrap();
    }

    /// Whether a scripted fault is still waiting to be used.
    pub fn fault_pending(&self) -> bool {
        [".drop-after-data", ".refuse-data-4xx"]
            .iter()
            .any(|f| self.mail.path().join(f).exists())
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One email as the standard library's parser reads it: `headers`, `defects`, `text`,
/// `attachments` (filename, content_type, base64).
pub fn read_mail(path: &Path) -> Value {
    let out = std::process::Command::new(smtp_python())
        .arg(repo_path("tests/smtp/read_mail.py"))
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "read_mail.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
