//! The real browser for tests that render what a person opens: Chromium headless
//! (Debian's package, or `CLW_TEST_CHROMIUM`), with a deadline, and where screenshots are
//! kept (`target/`).
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn chromium_path() -> String {
    std::env::var("CLW_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// Chromium headless on `page` with `args`, its standard output; fails the test when
/// Chromium is not there, fails or takes over a minute.
pub fn chromium(work: &Path, page: &Path, args: &[String]) -> String {
    let exe = chromium_path();
    assert!(
        Path::new(&exe).is_file(),
        "Chromium is needed for the browser tests and is not at {exe}: install \
         Debian's chromium package or set CLW_TEST_CHROMIUM"
    );
    let profile = tempfile::tempdir_in(work).unwrap();
    let (out, err) = (work.join("chromium.out"), work.join("chromium.err"));
    let mut child = Command::new(&exe)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
        ])
        .args([
            "--no-first-run",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(File::create(&out).unwrap())
        .stderr(File::create(&err).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{exe} does not start: {e}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!(
                "Chromium took over a minute: {}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    assert!(status.success(), "Chromium {args:?}: {status}\n{stderr}");
    std::fs::read_to_string(&out).unwrap()
}

pub fn target(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A screenshot of `page` at `width` × `height`, checked to be a PNG of that width with
/// something on it, kept as `target/<keep_as>` (the path printed); answers its size.
pub fn screenshot(work: &Path, page: &Path, width: u32, height: u32, keep_as: &str) -> usize {
    let png = work.join(keep_as);
    chromium(
        work,
        page,
        &[
            format!("--screenshot={}", png.display()),
            format!("--window-size={width},{height}"),
        ],
    );
    let bytes = std::fs::read(&png).expect("Chromium wrote the screenshot");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(
        bytes.len() > 10_000,
        "a page, not a blank: {} bytes",
        bytes.len()
    );
    let shot_width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    assert_eq!(shot_width, width, "the window's width");
    let kept = target(keep_as);
    std::fs::copy(&png, &kept).unwrap();
    println!(
        "the rendered page: {} ({} bytes)",
        kept.display(),
        bytes.len()
    );
    bytes.len()
}
