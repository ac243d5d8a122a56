//! The operator console, in a real headless browser (Chromium from Debian's packages,
//! driven by puppeteer-core: tests/console): sign in, see the parked message with its
//! reason and no patient values, replay it, and see it delivered and audited under the
//! operator's name. And the doors: off by default, nothing without signing in as a named
//! operator; roles, programme scopes, sessions, throttling.

mod common;

use std::process::Command;

use clw_gateway::app;
use common::*;

/// The operators: two who act on every programme, a viewer, and one scoped to
/// another programme than the test referrals' (`default`).
const OPERATORS: [(&str, &str, &str); 4] = [
    ("alice", "operator", "[]"),
    ("bob", "operator", "[]"),
    ("vera", "viewer", "[]"),
    ("scot", "operator", "[\"another-service\"]"),
];

fn secret_of(name: &str) -> String {
    format!("{name}-console-secret-0123")
}

fn console_table() -> String {
    let mut t =
        String::from("[console]\nenabled = true\nmax_failed_logins = 3\nlockout = \"10m\"\n");
    for (name, role, programmes) in OPERATORS {
        let var = format!("CLW_TEST_CONSOLE_{}", name.to_uppercase());
        // SAFETY: the same constant value in every test of this binary.
        unsafe { std::env::set_var(&var, secret_of(name)) };
        t.push_str(&format!(
            "[console.operators.{name}]\nsecret = {{ env = \"{var}\" }}\nrole = \"{role}\"\nprogrammes = {programmes}\n"
        ));
    }
    t
}

/// A console GET as operator `who` (HTTP Basic with their secret), redirects not followed.
async fn signed_in_get(who: &str, url: String) -> reqwest::Response {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(url)
        .basic_auth(who, Some(secret_of(who)))
        .send()
        .await
        .unwrap()
}

fn console_config(s: &Setup, hook: &str) -> clw_gateway::config::Config {
    s.config(&format!(
        "[spool]\npoll_interval = \"100ms\"\n[retry]\ntiers = [\"200ms\"]\n\
         [referrals]\ndestinations = [\"clw\"]\n\
         [destinations.clw]\nkind = \"webhook\"\nurl = \"{hook}\"\nallow = {PRSB_ALLOW}\n{}",
        console_table()
    ))
}

fn chromium() -> String {
    std::env::var("CLW_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// Drives the console in the browser as `operator`, pressing Replay on `id` if shown.
async fn drive(base: &str, operator: &str, id: &str) -> serde_json::Value {
    let (base, operator, id) = (base.to_string(), operator.to_string(), id.to_string());
    // Off the test's runtime thread: the gateway serves the browser from it meanwhile.
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .current_dir(repo_path("tests/console"))
            .env("CLW_TEST_CHROMIUM", chromium())
            .args(["drive.mjs", &base, &operator, &secret_of(&operator), &id])
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
    report
}

async fn park(gw: &app::Running, s: &Setup, id: &str) {
    drop_file(
        &s.dir.path().join("spool/referrals/inbox"),
        &format!("{id}.json"),
        &referral_with_id(id),
    );
    wait_message(&gw.store, "referral", id, "parked").await;
    eventually("the parked copy listed", WAIT, || async {
        gw.store
            .parked(Some("referral"), Some("parked"), 10)
            .await
            .unwrap()
            .iter()
            .any(|p| p.message_id == id)
            .then_some(())
    })
    .await;
}

fn replayed_by(audit: &[clw_gateway::store::AuditRow]) -> Vec<String> {
    audit
        .iter()
        .filter(|a| a.entry.action.as_str() == "replayed")
        .map(|a| a.entry.actor.clone())
        .collect()
}

/// In the real browser: a viewer sees the parked message but is refused its replay; an
/// operator scoped to another programme does not see it at all; two operators each
/// replay one, and the audit carries each one's own name; the session cookie is
/// HttpOnly and SameSite=Strict; signing out ends it.
#[tokio::test]
async fn console_replays_a_parked_message_in_a_real_browser() {
    let s = Setup::new("console");
    let hook = Receiver::start(&[400, 400]).await;
    let gw = app::start(console_config(&s, &hook.url)).await.unwrap();
    let base = format!("http://{}", gw.http_addr.unwrap());
    let (first, second) = ("console-replay-1", "console-replay-2");
    park(&gw, &s, first).await;
    park(&gw, &s, second).await;

    let viewer = drive(&base, "vera", first).await;
    assert_eq!(viewer["role"], "viewer");
    assert_eq!(viewer["sees_message"], true);
    assert_eq!(viewer["replay_status"], 403, "{viewer}");
    assert!(viewer["forbidden"].as_str().unwrap().contains("viewer"));
    let scoped = drive(&base, "scot", first).await;
    assert_eq!(scoped["sees_message"], false, "another programme's message");
    assert!(!scoped["parked_page"].as_str().unwrap().contains(first));
    assert_eq!(
        replayed_by(&gw.store.audit("referral", first).await.unwrap()),
        Vec::<String>::new()
    );

    // The platform is fixed; two operators replay one each.
    let alice = drive(&base, "alice", first).await;
    let bob = drive(&base, "bob", second).await;
    for (report, id) in [(&alice, first), (&bob, second)] {
        assert!(
            report["login_url"]
                .as_str()
                .unwrap()
                .ends_with("/console/login")
        );
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
        let cookie = &report["cookie"];
        assert_eq!(cookie["httpOnly"], true, "{cookie}");
        assert_eq!(cookie["sameSite"], "Strict", "{cookie}");
        assert!(
            report["signed_out_url"]
                .as_str()
                .unwrap()
                .ends_with("/console/login")
        );
    }
    assert_eq!(alice["signed_in_as"], "alice");
    assert_eq!(bob["signed_in_as"], "bob");
    wait_message(&gw.store, "referral", first, "delivered").await;
    wait_message(&gw.store, "referral", second, "delivered").await;
    assert_eq!(
        replayed_by(&gw.store.audit("referral", first).await.unwrap()),
        ["alice"]
    );
    assert_eq!(
        replayed_by(&gw.store.audit("referral", second).await.unwrap()),
        ["bob"]
    );
    assert_eq!(hook.count(), 4);
    gw.stop().await.unwrap();
}

/// The session cookie of a sign-in, by the form a browser posts.
async fn sign_in(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    secret: &str,
) -> reqwest::Response {
    http.post(format!("{base}/console/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("operator={name}&secret={secret}"))
        .send()
        .await
        .unwrap()
}

fn session_of(r: &reqwest::Response) -> String {
    r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn the_console_is_off_by_default_and_closed_to_anyone_not_signed_in() {
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
        .basic_auth("alice", Some("not-the-secret-at-all"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "a wrong secret is no secret");
    let r = sign_in(&http, &base, "alice", "guess").await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    let r = http
        .get(format!("{base}/console"))
        .basic_auth("alice", Some(secret_of("alice")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    // A form posted from another site is refused, signed in or not.
    let r = http
        .post(format!("{base}/console/replay"))
        .basic_auth("alice", Some(secret_of("alice")))
        .header("origin", "https://elsewhere.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("key=abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // A viewer may look, not act.
    let r = http
        .post(format!("{base}/console/replay"))
        .basic_auth("vera", Some(secret_of("vera")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("key=abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // A random session per sign-in, HttpOnly, not Secure on loopback, ended by signing
    // out — on this instance and on another sharing the store.
    let r = sign_in(&http, &base, "bob", &secret_of("bob")).await;
    assert_eq!(r.status(), 303);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Max-Age=")
    );
    assert!(!set.contains("Secure"), "{set}");
    let session = session_of(&r);
    let again = session_of(&sign_in(&http, &base, "bob", &secret_of("bob")).await);
    assert_ne!(session, again, "each sign-in its own session");
    let mut other = console_config(&s, &hook.url);
    other.gateway.instance = "second".into();
    let gw2 = app::start(other).await.unwrap();
    let base2 = format!("http://{}", gw2.http_addr.unwrap());
    let home = |base: String, cookie: String| {
        let http = http.clone();
        async move {
            http.get(format!("{base}/console"))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(home(base.clone(), session.clone()).await, 200);
    assert_eq!(
        home(base2.clone(), session.clone()).await,
        200,
        "the other instance knows it"
    );
    let out = http
        .post(format!("{base}/console/logout"))
        .header("cookie", session.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    assert_eq!(
        home(base.clone(), session.clone()).await,
        303,
        "signed out here"
    );
    assert_eq!(
        home(base2.clone(), session.clone()).await,
        303,
        "and everywhere"
    );
    assert_eq!(
        home(base.clone(), again.clone()).await,
        200,
        "another sign-in is its own"
    );
    // An instance where bob's secret has been changed holds none of his sessions.
    // SAFETY: a variable no other test reads.
    unsafe { std::env::set_var("CLW_TEST_CONSOLE_BOB_NEW", "a-new-secret-for-bob-0123") };
    let mut rotated = console_config(&s, &hook.url);
    rotated.gateway.instance = "rotated".into();
    rotated.console.operators.insert(
        "bob".into(),
        toml::from_str("secret = { env = \"CLW_TEST_CONSOLE_BOB_NEW\" }\nrole = \"operator\"\n")
            .unwrap(),
    );
    let gw3 = app::start(rotated).await.unwrap();
    let base3 = format!("http://{}", gw3.http_addr.unwrap());
    assert_eq!(
        home(base3, again).await,
        303,
        "a changed secret ends the session"
    );
    gw3.stop().await.unwrap();

    // Failed sign-ins are throttled: after three, even the right secret waits.
    for _ in 0..3 {
        assert_eq!(sign_in(&http, &base, "bob", "wrong").await.status(), 401);
    }
    assert_eq!(
        sign_in(&http, &base, "bob", &secret_of("bob"))
            .await
            .status(),
        429
    );
    gw2.stop().await.unwrap();
    gw.stop().await.unwrap();

    // Served beyond this machine (0.0.0.0, behind a TLS proxy), the cookie is Secure.
    let s = Setup::new("console-secure");
    let mut c = console_config(&s, &hook.url);
    c.http.listen = "0.0.0.0:0".parse().unwrap();
    let gw = app::start(c).await.unwrap();
    let base = format!("http://127.0.0.1:{}", gw.http_addr.unwrap().port());
    let r = sign_in(&http, &base, "alice", &secret_of("alice")).await;
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("; Secure")
    );
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

/// The programme dataset's report in the console: the form, the report for a programme
/// the operator sees (small counts shown as "<5", the page self-contained and audited),
/// refused for an operator scoped to another programme.
#[tokio::test]
async fn the_console_shows_the_dataset_report_to_those_who_see_the_programme() {
    let s = Setup::new("console-report");
    let hook = Receiver::start(&[]).await;
    let gw = app::start(console_config(&s, &hook.url)).await.unwrap();
    let base = format!("http://{}", gw.http_addr.unwrap());
    drop_file(
        &s.dir.path().join("spool/referrals/inbox"),
        "r1.json",
        &referral(),
    );
    wait_message(&gw.store, "referral", EXAMPLE_REFERRAL_ID, "delivered").await;
    let get = |who: &'static str, query: &'static str| {
        signed_in_get(who, format!("{base}/console/report{query}"))
    };
    let home = get("alice", "").await;
    assert_eq!(home.status(), 200);
    assert!(home.text().await.unwrap().contains("name=\"programme\""));
    let period = "?programme=default&from=2026-11-01&to=2026-12-31";
    let r = get("alice", period).await;
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let text = r.text().await.unwrap();
    assert!(
        text.contains("&lt;5"),
        "one referral is a small count: {text}"
    );
    for value in ["9912003888", "SMITH", "1970-09-11", "LS17", "gardening"] {
        assert!(!text.contains(value), "{value} in the report");
    }
    assert_eq!(
        get("scot", period).await.status(),
        403,
        "another programme's operator"
    );
    let audit = gw
        .store
        .audit("dataset", "default:2026-11-01..2026-12-31")
        .await
        .unwrap();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].entry.actor, "alice");
    gw.stop().await.unwrap();
}

/// The IG pack of the running configuration, for operators who see every programme: the
/// destination, its allow-list and agreement, no secret value, locked down like the
/// report; refused to an operator scoped to one programme; each view audited.
#[tokio::test]
async fn the_console_shows_the_ig_pack_to_operators_who_see_every_programme() {
    let s = Setup::new("console-ig");
    let hook = Receiver::start(&[]).await;
    let gw = app::start(console_config(&s, &hook.url)).await.unwrap();
    let base = format!("http://{}", gw.http_addr.unwrap());
    let get = |who: &'static str| signed_in_get(who, format!("{base}/console/ig"));
    for who in ["alice", "vera"] {
        let r = get(who).await;
        assert_eq!(r.status(), 200, "{who}");
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(csp.contains("default-src 'none'"), "{csp}");
        let page = r.text().await.unwrap();
        assert!(page.contains("clw (webhook)"), "the destination's section");
        assert!(page.contains("<svg"), "the data-flow diagram");
        assert!(page.contains("referrer_details"), "its allow-list");
        assert!(
            page.contains("another-service"),
            "the operators and their scopes"
        );
        for (name, _, _) in OPERATORS {
            assert!(
                !page.contains(&secret_of(name)),
                "{name}'s secret on the page"
            );
        }
    }
    assert_eq!(
        get("scot").await.status(),
        403,
        "a programme-scoped operator"
    );
    let unsigned = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{base}/console/ig"))
        .send()
        .await
        .unwrap();
    assert_ne!(unsigned.status(), 200, "not without signing in");
    let digest = gw.store.audit("ig", "").await.unwrap();
    assert!(
        digest.is_empty(),
        "audited under the configuration's digest, not blank"
    );
    let pack = clw_gateway::ig::build(
        &clw_gateway::ig::Source::load(&console_config(&s, &hook.url)).unwrap(),
        chrono::Utc::now(),
    )
    .unwrap();
    let audit = gw
        .store
        .audit("ig", &pack.about.config_digest)
        .await
        .unwrap();
    let actors: Vec<&str> = audit.iter().map(|a| a.entry.actor.as_str()).collect();
    assert_eq!(actors, ["alice", "vera"], "each view audited");
    gw.stop().await.unwrap();
}
