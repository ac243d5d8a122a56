//! The operator console, in a real headless browser (Chromium from Debian's packages,
//! driven by puppeteer-core: tests/console): sign in, see the parked message with its
//! reason and no patient values, replay it, and see it delivered and audited under the
//! operator's name. And the doors: off by default, nothing without the token.

mod common;

use std::process::Command;

use clw_gateway::app;
use common::*;

const TOKEN: &str = "console-token-for-tests-0123";

fn console_config(s: &Setup, hook: &str) -> clw_gateway::config::Config {
    // SAFETY: the same constant value in every test of this binary.
    unsafe { std::env::set_var("CLW_TEST_CONSOLE_TOKEN", TOKEN) };
    s.config(&format!(
        "[spool]\npoll_interval = \"100ms\"\n[retry]\ntiers = [\"200ms\"]\n\
         [referrals]\ndestinations = [\"clw\"]\n\
         [destinations.clw]\nkind = \"webhook\"\nurl = \"{hook}\"\nallow = {PRSB_ALLOW}\n\
         [console]\nenabled = true\ntoken = {{ env = \"CLW_TEST_CONSOLE_TOKEN\" }}\n"
    ))
}

fn chromium() -> String {
    std::env::var("CLW_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

#[tokio::test]
async fn console_replays_a_parked_message_in_a_real_browser() {
    let s = Setup::new("console");
    let hook = Receiver::start(&[400]).await;
    let gw = app::start(console_config(&s, &hook.url)).await.unwrap();
    let base = format!("http://{}", gw.http_addr.unwrap());
    let id = "console-replay-1";
    std::fs::write(
        s.dir.path().join("spool/referrals/inbox/r.json"),
        referral_with_id(id).to_string(),
    )
    .unwrap();
    wait_message(&gw.store, "referral", id, "parked").await;
    eventually("the parked copy listed", WAIT, || async {
        (!gw.store
            .parked(Some("referral"), Some("parked"), 10)
            .await
            .unwrap()
            .is_empty())
        .then_some(())
    })
    .await;
    // The platform is fixed; an operator replays from the console.
    // Off the test's runtime thread: the gateway serves the browser from it meanwhile.
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .current_dir(repo_path("tests/console"))
            .env("CLW_TEST_CHROMIUM", chromium())
            .args(["drive.mjs", &base, TOKEN, "Test Operator", id])
            .output()
            .expect("node runs (Node 20; scripts/test installs tests/console)")
    })
    .await
    .unwrap();
    let report: serde_json::Value = serde_json::from_slice(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or("{}")
            .as_bytes(),
    )
    .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(report.get("error").is_none(), "{report}");
    assert!(
        report["login_url"]
            .as_str()
            .unwrap()
            .ends_with("/console/login")
    );
    assert_eq!(report["signed_in_as"], "Test Operator");
    let parked_page = report["parked_page"].as_str().unwrap();
    for want in ["deliver", "permanent", "clw answered 400", id] {
        assert!(parked_page.contains(want), "{want} on the page");
    }
    // Reasons, never patient values.
    for secret in ["9912003888", "SMITH", "Richard", "1970-09-11"] {
        assert!(!parked_page.contains(secret), "{secret} on the console");
        assert!(!report["after_page"].as_str().unwrap().contains(secret));
    }
    assert!(
        report["done"].as_str().unwrap().contains("Replayed 1"),
        "{report}"
    );

    wait_message(&gw.store, "referral", id, "delivered").await;
    let audit = gw.store.audit("referral", id).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.entry.action.as_str() == "replayed" && a.entry.actor == "Test Operator"),
        "{audit:?}"
    );
    assert_eq!(hook.count(), 2);
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn the_console_is_off_by_default_and_closed_without_its_token() {
    let s = Setup::new("console-doors");
    let hook = Receiver::start(&[]).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let off = app::start(s.config("")).await.unwrap();
    let r = http
        .get(format!("http://{}/console", off.http_addr.unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "off unless enabled");
    off.stop().await.unwrap();

    let s = Setup::new("console-doors-on");
    let gw = app::start(console_config(&s, &hook.url)).await.unwrap();
    let base = format!("http://{}", gw.http_addr.unwrap());
    let r = http.get(format!("{base}/console")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/console/login");
    let r = http
        .get(format!("{base}/console"))
        .bearer_auth("not-the-token-at-all")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "a wrong token is no token");
    let r = http
        .post(format!("{base}/console/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("operator=someone&token=guess")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    let r = http
        .get(format!("{base}/console"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    // A form posted from another site is refused, token or not.
    let r = http
        .post(format!("{base}/console/replay"))
        .bearer_auth(TOKEN)
        .header("origin", "https://elsewhere.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("key=abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    gw.stop().await.unwrap();
}

#[test]
fn chromium_is_installed_for_the_browser_test() {
    let ok = Command::new(chromium())
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "Chromium at {} (scripts/test installs Debian's chromium)",
        chromium()
    );
}
