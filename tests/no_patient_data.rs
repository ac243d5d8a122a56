//! No patient value in any log line (at debug level, every crate), parking header,
//! reason file, `status` or `dlq list` output, across delivery and failure scenarios.

mod common;

use std::io::Write as _;
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// Every log line any test in this binary wrote.
fn captured() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = {
            let buf = buf.clone();
            move || Capture(buf.clone())
        };
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .json()
            .with_writer(writer)
            .init();
        buf
    })
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The fixture's patient values, and the forms mappings turn them into.
const PATIENT_VALUES: &[&str] = &[
    "9912003888",
    "991 200 3888",
    "0402568877",
    "Richard",
    "SMITH",
    "Smith",
    "1970-09-11",
    "11/09/1970",
    "19700911",
    "Sandmoor",
    "LS17 7DF",
    "01131231234",
    "Lives alone since bereavement",
    "gardening",
];

fn assert_clean(what: &str, text: &str) {
    for v in PATIENT_VALUES {
        assert!(
            !text.contains(v),
            "{what} holds the patient value {v:?}:\n{}",
            text.lines()
                .filter(|l| l.contains(v))
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

fn gateway_cli(config: &std::path::Path, args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_clw-gateway"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test]
async fn no_patient_value_leaves_in_logs_headers_reason_files_or_operator_output() {
    let log = captured().clone();
    tracing::debug!("capture started");

    // On the broker: one delivered, one refused by the platform (400), one retried
    // through 503s, one with a malformed NHS number, one with the same id and other
    // content, one declined by consent, one to an unrouted practice.
    let h = Harness::start_with("noleak", &[400], &["100ms", "100ms"], |c| {
        c.logging.level = "debug".into();
    })
    .await;
    let refused = unique("ref");
    h.publish(&refused, &referral()).await;
    h.wait_state(&refused, "parked").await;
    let ok = unique("ref");
    h.hook.set_script(&[503, 503]);
    h.publish(&ok, &referral()).await;
    h.wait_state(&ok, "delivered").await;
    let mut changed = referral();
    changed["entry"][2]["resource"]["name"][0]["family"] = json!("SMITH-JONES");
    h.publish(&ok, &changed).await;
    h.wait_audit(&ok, "parked").await;
    let bad = unique("ref");
    let mut bad_nhs = referral();
    bad_nhs["entry"][2]["resource"]["identifier"][0]["value"] = json!("9912003889");
    h.publish(&bad, &bad_nhs).await;
    h.wait_state(&bad, "parked").await;
    let declined = unique("ref");
    let mut deny = referral();
    deny["entry"][7]["resource"]["provision"]["type"] = json!("deny");
    h.publish(&declined, &deny).await;
    h.wait_state(&declined, "withheld").await;
    h.wait_parked("referral", 3).await;

    let parked = common::dlq_list(&h.t, &h.gw.store).await.unwrap();
    assert_eq!(parked.len(), 3);
    assert_clean("parking headers", &format!("{parked:?}"));

    // The operator's view, from the command line.
    let cfg = h.s.dir.path().join("gateway.toml");
    let mut f = std::fs::File::create(&cfg).unwrap();
    writeln!(
        f,
        "[gateway]\ndata_dir = \"{}\"\n[store]\nurl = \"{}\"\n[broker]\nurl = \"{}\"\nprefix = \"{}\"\n\
         [retry]\ntiers = [\"100ms\", \"100ms\"]\n",
        h.s.dir.path().display(),
        h.s.store_url,
        amqp_url(),
        h.s.prefix
    )
    .unwrap();
    drop(f);
    let mut operator = String::new();
    for args in [
        vec!["dlq", "list"],
        vec!["status"],
        vec!["status", &ok],
        vec!["status", &ok, "--json"],
        vec!["status", &refused, "--json"],
        vec!["status", &bad],
        vec!["status", &declined],
    ] {
        let out = gateway_cli(&cfg, &args);
        operator.push_str(&out);
    }
    assert!(
        operator.contains("same id, different content"),
        "{operator}"
    );
    assert_clean("status and dlq list output", &operator);
    h.finish().await;

    // In spool mode: a file that fails writes a reason file.
    let s = Setup::new("noleak-spool");
    let outbox = s.dir.path().join("outbox");
    let config = s.config(&format!(
        "[referrals]\ndestinations = [\"files\"]\n[destinations.files]\nkind = \"file\"\ndir = \"{}\"\nallow = {PRSB_ALLOW}\n",
        outbox.display()
    ));
    let spool = s.dir.path().join("spool/referrals");
    let gw = clw_gateway::app::start(config).await.unwrap();
    let mut bad_date = referral();
    bad_date["entry"][2]["resource"]["birthDate"] = json!("11/09/1970");
    std::fs::write(spool.join("inbox/bad.json"), bad_date.to_string()).unwrap();
    let reason = spool.join("failed/bad.json.reason.json");
    eventually("the reason file", Duration::from_secs(20), || async {
        reason.exists().then_some(())
    })
    .await;
    let reason: Value = serde_json::from_slice(&std::fs::read(&reason).unwrap()).unwrap();
    assert!(
        reason["field"].as_str().unwrap().contains("birthDate"),
        "{reason}"
    );
    assert_clean("the reason file", &reason.to_string());
    gw.stop().await.unwrap();

    let lines = String::from_utf8(log.lock().unwrap().clone()).unwrap();
    assert!(lines.lines().count() > 50, "debug logging was captured");
    assert!(lines.contains("\"level\":\"DEBUG\""));
    assert_clean("the logs", &lines);
}
