//! The information-governance pack (`clw-gateway ig`), rendered for the shipped example
//! configurations — England (deploy/config/rabbitmq.toml) and Scotland
//! (deploy/config/scotland.toml) — and checked against each configuration field by field:
//! every destination and its allow-list, its agreement, the retention periods, the
//! digest and version; no secret value anywhere; each generation audited. Then `check`
//! and start-up refusing a configuration out of step with its agreements, and the HTML
//! in a real browser.

#[path = "common/browser.rs"]
mod browser;
mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{gateway, text};

use serde_json::Value;
use sqlx::Connection as _;

/// Every `{ env = "NAME" }` the configuration reads a secret from.
fn secret_vars(v: &toml::Value, out: &mut Vec<String>) {
    match v {
        toml::Value::Table(t) => {
            if let (Some(toml::Value::String(name)), 1) = (t.get("env"), t.len()) {
                out.push(name.clone());
            }
            t.values().for_each(|x| secret_vars(x, out));
        }
        toml::Value::Array(a) => a.iter().for_each(|x| secret_vars(x, out)),
        _ => {}
    }
}

struct Generated {
    files: BTreeMap<String, String>,
    json: Value,
    secrets: Vec<String>,
    db: std::path::PathBuf,
}

/// Runs `ig --out` for `config` with `routes`, every secret variable set to a distinctive
/// value `tag` makes.
fn generate(dir: &Path, config: &str, routes: &str, tag: &str) -> Generated {
    let parsed: toml::Value = toml::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(config)).unwrap(),
    )
    .unwrap();
    let mut vars = Vec::new();
    secret_vars(&parsed, &mut vars);
    assert!(!vars.is_empty(), "the example reads secrets");
    let db = dir.join("gw.db");
    let out = dir.join(format!("pack-{tag}"));
    let mut env: Vec<(String, String)> = vec![
        (
            "CLW_STORE__URL".into(),
            format!("sqlite://{}?mode=rwc", db.display()),
        ),
        ("CLW_REFERRALS__ROUTES".into(), routes.into()),
        ("CLW_MAPPINGS__DIR".into(), "mappings".into()),
    ];
    let secrets: Vec<String> = vars
        .iter()
        .map(|v| format!("Zq9-{tag}-value-of-{v}-never-shown"))
        .collect();
    env.extend(vars.iter().cloned().zip(secrets.iter().cloned()));
    let o = gateway(
        &[
            "--config",
            config,
            "ig",
            "--out",
            out.to_str().unwrap(),
            "--actor",
            "ig-lead",
        ],
        &env.iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect::<Vec<_>>(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let mut files = BTreeMap::new();
    for name in [
        "ig-pack.md",
        "ig-pack.html",
        "ig-pack.json",
        "data-flow.svg",
        "dpia-annex.md",
        "dsa-field-schedule.md",
    ] {
        files.insert(
            name.to_string(),
            std::fs::read_to_string(out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}")),
        );
    }
    let json = serde_json::from_str(&files["ig-pack.json"]).unwrap();
    Generated {
        files,
        json,
        secrets,
        db,
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

/// The pack says what the configuration says, field by field.
fn assert_pack_matches(config: &str, g: &Generated) {
    let parsed: toml::Value = toml::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(config)).unwrap(),
    )
    .unwrap();
    let pack = &g.json;
    let listed: Vec<&Value> = pack["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .chain(pack["writers"].as_array().unwrap())
        .collect();
    let configured = parsed["destinations"].as_table().unwrap();
    assert_eq!(listed.len(), configured.len(), "every destination, once");
    let md = &g.files["ig-pack.md"];
    let schedule = &g.files["dsa-field-schedule.md"];
    for (name, d) in configured {
        let view = listed
            .iter()
            .find(|v| v["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} is in the pack"));
        assert_eq!(view["kind"], d["kind"].as_str().unwrap(), "{name}");
        assert_eq!(
            view["agreement"],
            d["agreement"].as_str().unwrap(),
            "{name}"
        );
        let allow: Vec<String> = d["allow"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            strings(&view["allow"]),
            allow,
            "{name}: the allow-list as configured"
        );
        let fields = view["fields"].as_array().unwrap();
        for entry in &allow {
            assert!(
                fields.iter().any(|f| f["allowed_by"] == entry.as_str()),
                "{name}: {entry} expands to at least one field"
            );
            assert!(
                md.contains(&format!("`{entry}`")),
                "{name}: {entry} in the Markdown"
            );
        }
        for f in fields {
            let by = f["allowed_by"].as_str().unwrap();
            assert!(
                allow.iter().any(|a| a == by),
                "{name}: {f} comes from the allow-list"
            );
            let canonical = f["canonical"].as_str().unwrap();
            assert!(
                canonical == by || canonical.starts_with(&format!("{by}.")),
                "{name}: {canonical} lies under {by}"
            );
            assert!(
                schedule.contains(&format!("`{canonical}`")),
                "{canonical} in the schedule"
            );
        }
        // Names, numbers and dates of birth are marked identifiable wherever they go.
        for f in fields {
            let c = f["canonical"].as_str().unwrap();
            if c.ends_with("nhs_number")
                || c.ends_with("date_of_birth")
                || c == "person_demographics.name"
            {
                assert_eq!(f["identifiable"], true, "{name}: {c}");
            }
            if c == "referral_details.what_matters_to_me" || c == "summary" {
                assert_eq!(f["free_text"], true, "{name}: {c}");
            }
        }
        assert!(
            !view["hazards"].as_array().unwrap().is_empty(),
            "{name}: the hazards that bear on it"
        );
    }
    // Retention: every period as configured (or its default), where it rests.
    let defaults: BTreeMap<&str, &str> = [
        ("spool_done", "7d"),
        ("outboxes", "30d"),
        ("sheets", "90d"),
        ("bodies", "30d"),
        ("referrals", "400d"),
        ("rows", "400d"),
        ("audit", "2922d"),
        ("dataset", "2922d"),
    ]
    .into();
    let retention = pack["retention"].as_array().unwrap();
    for (key, default) in defaults {
        let configured = parsed
            .get("retention")
            .and_then(|r| r.get(key))
            .and_then(|v| v.as_str())
            .unwrap_or(default);
        let want = humantime::parse_duration(configured).unwrap().as_secs();
        let row = retention
            .iter()
            .find(|r| r["key"] == format!("retention.{key}"));
        if key == "spool_done" && parsed.get("broker").is_some() {
            assert!(row.is_none(), "RabbitMQ mode keeps no spool");
            continue;
        }
        let row = row.unwrap_or_else(|| panic!("retention.{key} listed"));
        assert_eq!(row["seconds"], want, "retention.{key}");
        let days = want / 86_400;
        assert!(
            row["period"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{days} day")),
            "retention.{key}: {} for {configured}",
            row["period"]
        );
        assert!(
            !row["place"].as_str().unwrap().is_empty(),
            "retention.{key} rests somewhere"
        );
    }
    // Agreements as declared.
    for (id, a) in parsed["agreements"].as_table().unwrap() {
        let view = pack["agreements"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["id"] == id.as_str())
            .unwrap();
        assert_eq!(view["declared"], true);
        assert_eq!(view["lawful_basis"], a["lawful_basis"].as_str().unwrap());
        assert!(
            md.contains(id.as_str()) && schedule.contains(id.as_str()),
            "{id}"
        );
    }
    assert_eq!(
        pack["findings"],
        Value::Array(vec![]),
        "the example is in step"
    );
    // What it was made from.
    let digest = pack["about"]["config_digest"].as_str().unwrap();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    let version = format!("clw-gateway {}", env!("CARGO_PKG_VERSION"));
    for (name, body) in &g.files {
        if name.ends_with(".md") || name.ends_with(".html") {
            assert!(body.contains(digest), "{name} carries the digest");
            assert!(body.contains(&version), "{name} carries the version");
            assert!(!body.contains("{{"), "{name}: every placeholder answered");
        }
        for secret in &g.secrets {
            assert!(
                !body.contains(secret.as_str()),
                "{name} shows a secret value"
            );
        }
    }
    // The templates' shape: the ICO's seven steps and the eight Caldicott principles.
    let dpia = &g.files["dpia-annex.md"];
    for step in 1..=7 {
        assert!(dpia.contains(&format!("Step {step}")), "ICO step {step}");
    }
    assert!(dpia.contains("Caldicott"), "the Caldicott principles");
    assert!(
        dpia.contains("> **For the organisation:**"),
        "questions left to ask"
    );
    assert!(g.files["data-flow.svg"].starts_with("<svg"), "an SVG");
    roxmltree::Document::parse(&g.files["data-flow.svg"]).expect("well-formed SVG");
}

async fn audited(db: &Path) -> Vec<(String, String)> {
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query_as("SELECT actor, message_id FROM audit_log WHERE action = 'ig-pack'")
        .fetch_all(&mut c)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_scottish_pack_says_what_its_configuration_says_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let config = "deploy/config/scotland.toml";
    let g = generate(
        dir.path(),
        config,
        "deploy/config/scotland-routes.yaml",
        "a",
    );
    assert_pack_matches(config, &g);
    let routes = g.json["routes"].as_array().unwrap();
    assert!(
        routes.iter().all(|r| r["nation"] == "Scotland"),
        "{routes:?}"
    );
    for writer in ["gp-docman", "gp-mail"] {
        assert!(
            g.files["data-flow.svg"].contains(writer),
            "{writer} in the diagram"
        );
    }
    // Another value for every secret: the same configuration, the same digest.
    let again = generate(
        dir.path(),
        config,
        "deploy/config/scotland-routes.yaml",
        "b",
    );
    assert_eq!(
        again.json["about"]["config_digest"],
        g.json["about"]["config_digest"]
    );
    let rows = audited(&g.db).await;
    assert_eq!(rows.len(), 2, "each generation audited: {rows:?}");
    assert!(rows.iter().all(|(actor, id)| actor == "ig-lead"
        && Some(id.as_str()) == g.json["about"]["config_digest"].as_str()));
}

#[tokio::test]
async fn the_english_pack_says_what_its_configuration_says_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let config = "deploy/config/rabbitmq.toml";
    let g = generate(dir.path(), config, "deploy/routes/routes.yaml", "e");
    assert_pack_matches(config, &g);
    let named = |list: &str, key: &str, value: &str| -> Value {
        g.json[list]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d[key] == value)
            .unwrap()
            .clone()
    };
    let york = named("destinations", "name", "york-charitylog");
    assert_eq!(york["programmes"], serde_json::json!(["york-wellbeing"]));
    // What each is sent of a referral's later messages, and the unanswered policy.
    assert!(
        york["later"][0]
            .as_str()
            .unwrap()
            .starts_with("none through its interface"),
        "{}",
        york["later"]
    );
    let links = named("destinations", "name", "leeds-links");
    assert_eq!(
        links["later"].as_array().unwrap().len(),
        5,
        "{}",
        links["later"]
    );
    assert!(
        g.files["ig-pack.md"].contains("| Later messages |"),
        "the pack says so"
    );
    let route = named("routes", "programme", "leeds-links");
    assert_eq!(
        route["unanswered"],
        "reminded after 10 days (again every 2 days); closed as not responded after 14 days, \
         written to the practice record"
    );
    assert_eq!(
        york["channel"]["credentials"],
        serde_json::json!([
            "source_key: environment variable YORK_CHARITYLOG_SOURCE_KEY",
            "org_key: environment variable YORK_CHARITYLOG_ORG_KEY",
            "user_key: environment variable YORK_CHARITYLOG_USER_KEY"
        ]),
        "where each key is read from, never its value"
    );
    assert_eq!(audited(&g.db).await.len(), 1);
}

/// What the built-in PRSB referral mapping reads.
const ALLOW: [&str; 7] = [
    "person_demographics",
    "contact_preferences",
    "referral_details",
    "referrer_details",
    "gp_practice",
    "referred_to",
    "consent",
];

/// A small configuration: one file destination, `extra` appended.
fn small_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            "[gateway]\ndata_dir = {data:?}\n[http]\nenabled = false\n[mappings]\ndir = {m:?}\n\
             [referrals]\ndestinations = [\"outbox\"]\n\
             [destinations.outbox]\nkind = \"file\"\ndir = {out:?}\n\
             allow = [{allow}]\n{extra}",
            allow = ALLOW.map(|a| format!("{a:?}")).join(", "),
            data = dir.display().to_string(),
            m = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("mappings")
                .display()
                .to_string(),
            out = dir.join("out").display().to_string(),
        ),
    )
    .unwrap();
    path
}

#[test]
fn check_refuses_a_destination_without_an_agreement_when_agreements_are_required() {
    let dir = tempfile::tempdir().unwrap();
    let run = |path: &Path, cmd: &str| gateway(&["--config", path.to_str().unwrap(), cmd], &[]);

    // Not required: a warning naming the key; check passes.
    let loose = small_config(dir.path(), "");
    let o = run(&loose, "check");
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("WARN") && l.contains("destinations.outbox.agreement")),
        "{out}"
    );

    // Required: refused, by check and by start-up alike.
    let strict = small_config(dir.path(), "[ig]\nrequire_agreements = true\n");
    for cmd in ["check", "serve"] {
        let o = run(&strict, cmd);
        let out = text(&o);
        assert!(!o.status.success(), "{cmd}: {out}");
        assert!(
            out.contains("destinations.outbox.agreement"),
            "{cmd}: {out}"
        );
    }

    // An agreement that does not declare what is allowed, or keeps data for less time.
    let out_of_step = small_config(
        dir.path(),
        "[ig]\nrequire_agreements = true\n[retention]\noutboxes = \"60d\"\n\
         [agreements.DSA-1]\ncontrollers = [\"A practice\"]\nlawful_basis = \"Article 6(1)(e)\"\n\
         fields = [\"contact_preferences\", \"referral_details\", \"referrer_details\", \"gp_practice\", \"referred_to\", \"consent\"]\n\
         max_retention = \"45d\"\n",
    )
    .to_str()
    .unwrap()
    .to_string();
    let text_of = std::fs::read_to_string(&out_of_step)
        .unwrap()
        .replace("allow = [", "agreement = \"DSA-1\"\nallow = [");
    std::fs::write(&out_of_step, text_of).unwrap();
    let o = run(Path::new(&out_of_step), "check");
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("destinations.outbox.allow"), "{out}");
    assert!(out.contains("person_demographics"), "{out}");
    assert!(out.contains("retention.outboxes"), "{out}");
    assert!(
        !out.contains("destinations.outbox.agreement"),
        "it names one: {out}"
    );
    // The pack says the same, and is still made (an IG lead needs to see what is wrong).
    let o = gateway(&["--config", &out_of_step, "ig", "--format", "json"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let pack: Value = serde_json::from_slice(&o.stdout).unwrap();
    let keys: Vec<&str> = pack["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["key"].as_str().unwrap())
        .collect();
    assert!(keys.contains(&"destinations.outbox.allow"), "{keys:?}");
    assert!(keys.contains(&"retention.outboxes"), "{keys:?}");
    assert!(
        pack["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["level"] == "fail")
    );
}

#[test]
fn the_pack_in_a_real_browser_a_screenshot_and_its_content() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate(
        dir.path(),
        "deploy/config/scotland.toml",
        "deploy/config/scotland-routes.yaml",
        "browser",
    );
    let page = dir.path().join("ig-pack.html");
    std::fs::write(&page, &g.files["ig-pack.html"]).unwrap();
    browser::screenshot(dir.path(), &page, 1200, 3000, "ig-pack.png");

    // The DOM as the browser built it: the diagram inline, each destination's section and
    // field table, the DPIA annex and the schedule, nothing fetched from anywhere.
    let dom = browser::chromium(dir.path(), &page, &["--dump-dom".into()]);
    assert!(dom.contains("<svg"), "the diagram is inline");
    for want in [
        "links-lamplight (lamplight)",
        "connectors-sheet (csv)",
        "gp-docman (docman)",
        "gp-mail (mail)",
        "person_demographics.chi_number",
        "DSA-HSCP-LINKS-2026-01",
        "Caldicott",
        "Field schedule",
    ] {
        assert!(dom.contains(want), "{want} in the page");
    }
    for attr in ["src=\"http", "href=\"http", "<script", "<link"] {
        assert!(
            !g.files["ig-pack.html"].contains(attr),
            "self-contained: no {attr}"
        );
    }
}
