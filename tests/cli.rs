//! The operator's commands, run as the binary: check, topology, status, dlq list|replay.

mod common;

use common::*;
use std::process::Output;

#[test]
fn check_passes_on_the_example_embedded_config() {
    let dir = tempfile::tempdir().unwrap();
    let o = gateway(
        &["--config", "deploy/config/embedded.toml", "check"],
        &[
            ("CLW_GATEWAY__DATA_DIR", dir.path().display().to_string()),
            (
                "CLW_DESTINATIONS__OUTBOX__DIR",
                dir.path().join("out").display().to_string(),
            ),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("ok   destination outbox (file for referral, mapping prsb-referral@1)"),
        "{}",
        text(&o)
    );
}

#[test]
fn check_names_the_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[broker]\nurl = \"amqp://x\"\nprefetch = -1\n").unwrap();
    let o = gateway(&["--config", path.to_str().unwrap(), "check"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("broker.prefetch"), "{}", text(&o));

    std::fs::write(&path, "[destinations.hook]\nkind = \"webhook\"\nurl = \"https://x\"\ntoken = { env = \"CLW_TEST_UNSET_TOKEN\" }\nallow = [\"referral_details\"]\n[referrals]\ndestinations = [\"hook\"]\n").unwrap();
    let o = gateway(
        &["--config", path.to_str().unwrap(), "check"],
        &[("CLW_GATEWAY__DATA_DIR", dir.path().display().to_string())],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains(
            "destinations.hook.token: environment variable CLW_TEST_UNSET_TOKEN is not set"
        ),
        "{}",
        text(&o)
    );
}

#[test]
fn exported_definitions_match_the_topology() {
    let o = gateway(
        &["--config", "deploy/config/rabbitmq.toml", "topology"],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let printed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_path("deploy/rabbitmq/definitions.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        printed, committed,
        "regenerate deploy/rabbitmq/definitions.json with `clw-gateway topology`"
    );
}

#[test]
fn help_explains_each_command() {
    let o = gateway(&["--help"], &[]);
    let t = text(&o);
    for cmd in ["serve", "check", "dlq", "status", "topology", "bench"] {
        assert!(t.contains(cmd), "{cmd} in --help");
    }
    let o = gateway(&["dlq", "replay", "--help"], &[]);
    assert!(text(&o).contains("--all"));
}

#[tokio::test]
async fn status_and_dlq_replay_from_the_command_line() {
    let h = Harness::start("cli", &[400], &["300ms"]).await;
    let s = &h.s;
    let id = unique("ref");
    h.publish(&id, &referral()).await;
    h.wait_parked("referral", 1).await;

    let env = vec![
        ("CLW_STORE__URL", s.store_url.clone()),
        ("CLW_BROKER__URL", amqp_url()),
        ("CLW_BROKER__PREFIX", s.prefix.clone()),
        ("CLW_RETRY__TIERS", "[\"300ms\"]".to_string()),
        ("CLW_GATEWAY__DATA_DIR", s.dir.path().display().to_string()),
    ];
    let cfg = s.dir.path().join("cli.toml");
    std::fs::write(&cfg, "[broker]\nurl = \"amqp://placeholder\"\n").unwrap();
    let cfg = cfg.to_str().unwrap();

    let o = gateway(&["--config", cfg, "status", &id], &env);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("state     parked"), "{}", text(&o));
    assert!(text(&o).contains("answered 400"), "{}", text(&o));

    let o = gateway(&["--config", cfg, "dlq", "list"], &env);
    assert!(o.status.success(), "{}", text(&o));
    let line = String::from_utf8_lossy(&o.stdout)
        .lines()
        .find(|l| l.starts_with(&id))
        .map(str::to_string);
    let line = line.unwrap_or_else(|| panic!("{id} listed: {}", text(&o)));
    assert!(line.contains("deliver\tpermanent\tattempts=1"), "{line}");

    // The broker out of reach: what the store holds is still listed, and the command
    // says the list may be incomplete.
    let mut no_broker = env.clone();
    no_broker[1].1 = "amqp://guest:guest@127.0.0.1:1/%2f".to_string();
    let o = gateway(&["--config", cfg, "dlq", "list"], &no_broker);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&id),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("could not be brought in"), "{}", text(&o));

    let o = gateway(
        &["--config", cfg, "dlq", "replay", &id, "--actor", "it-team"],
        &env,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(&format!("replayed {id}")));
    h.wait_state(&id, "delivered").await;
    let o = gateway(&["--config", cfg, "status", &id, "--json"], &env);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["state"], "delivered");
    assert!(
        v["audit"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "replayed" && a["actor"] == "it-team")
    );

    let o = gateway(&["--config", cfg, "dlq", "replay", &id], &env);
    assert_eq!(
        o.status.code(),
        Some(2),
        "nothing left to replay: {}",
        text(&o)
    );
    h.finish().await;
}

#[test]
fn mapping_test_runs_the_golden_fixtures_and_check_refuses_a_broken_mapping() {
    let o = gateway(&["mapping", "test"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains(" fixtures, 0 failed"), "{}", text(&o));

    let o = gateway(
        &[
            "mapping",
            "run",
            "examples/referral-bundle.json",
            "--mapping",
            "charitylog-referral",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("error: org_type_id: required"),
        "{}",
        text(&o)
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.yaml"), "name: Not A Valid Name\n").unwrap();
    let o = gateway(
        &["check"],
        &[
            ("CLW_MAPPINGS__DIR", dir.path().display().to_string()),
            ("CLW_GATEWAY__DATA_DIR", dir.path().display().to_string()),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("broken.yaml: /name"), "{}", text(&o));
}

#[test]
fn check_passes_on_the_example_csv_sheet_config() {
    let dir = tempfile::tempdir().unwrap();
    let o = gateway(
        &["--config", "deploy/config/csv-sheet.toml", "check"],
        &[
            ("CLW_GATEWAY__DATA_DIR", dir.path().display().to_string()),
            (
                "CLW_DESTINATIONS__SHEET__DIR",
                dir.path().join("sheet").display().to_string(),
            ),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("ok   destination sheet (csv for referral, mapping csv-referral@2)"),
        "{}",
        text(&o)
    );
}

/// The production example wires every adapter through mappings, routes and allow-lists;
/// `check` must accept it once its secrets and paths exist.
#[test]
fn check_accepts_the_production_example_with_every_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p).display().to_string();
    std::fs::copy("deploy/routes/routes.yaml", dir.path().join("routes.yaml")).unwrap();
    let o = gateway(
        &["--config", "deploy/config/rabbitmq.toml", "check"],
        &[
            (
                "CLW_STORE__URL",
                format!("sqlite://{}?mode=rwc", d("gw.db")),
            ),
            ("CLW_BROKER__URL", amqp_url()),
            ("CLW_REFERRALS__ROUTES", d("routes.yaml")),
            ("CLW_MAPPINGS__DIR", "mappings".into()),
            ("CLW_DESTINATIONS__LEEDS_SHEET__DIR", d("sheet")),
            ("LEEDS_LINKS_TOKEN", "t".into()),
            ("LEEDS_LAMPLIGHT_KEY", "k".into()),
            ("YORK_CHARITYLOG_SOURCE_KEY", "s".into()),
            ("YORK_CHARITYLOG_ORG_KEY", "o".into()),
            ("YORK_CHARITYLOG_USER_KEY", "u".into()),
        ],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    for want in [
        "ok   destination leeds-links (webhook for referral, mapping prsb-referral@1)",
        "ok   destination leeds-lamplight (lamplight for referral, mapping lamplight-referral@2)",
        "ok   destination leeds-sheet (csv for referral, mapping csv-referral@2)",
        "ok   destination york-charitylog (charitylog for referral, mapping charitylog-referral@2)",
    ] {
        assert!(out.contains(want), "{want}\n{out}");
    }
}

/// The Scottish example: practices by Scottish practice code, Lamplight and a spreadsheet,
/// Docman and mail record writers; `check` accepts it, with no MESH warning.
#[test]
fn check_accepts_the_scottish_example() {
    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p).display().to_string();
    let secret = "a-dummy-secret-for-check".to_string();
    let o = gateway(
        &["--config", "deploy/config/scotland.toml", "check"],
        &[
            (
                "CLW_STORE__URL",
                format!("sqlite://{}?mode=rwc", d("gw.db")),
            ),
            ("CLW_BROKER__URL", amqp_url()),
            ("CLW_GATEWAY__DATA_DIR", dir.path().display().to_string()),
            (
                "CLW_REFERRALS__ROUTES",
                "deploy/config/scotland-routes.yaml".into(),
            ),
            ("CLW_MAPPINGS__DIR", "mappings".into()),
            ("CLW_DESTINATIONS__CONNECTORS_SHEET__DIR", d("sheet")),
            ("COMMUNITY_LINKS_EVENTS_SECRET", secret.clone()),
            ("WELLBEING_CONNECTORS_UPLOAD_SECRET", secret.clone()),
            ("CLW_CONSOLE_TOKEN", secret.clone()),
            ("COMMUNITY_LINKS_LAMPLIGHT_KEY", secret.clone()),
            ("GP_DOCMAN_TOKEN", secret.clone()),
            ("GP_MAIL_USER", secret.clone()),
            ("GP_MAIL_PASSWORD", secret),
        ],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    for want in [
        "ok   destination links-lamplight (lamplight for referral, mapping lamplight-referral@2)",
        "ok   destination connectors-sheet (csv for referral, mapping csv-referral@2)",
        "ok   destination gp-docman (docman for message-back, mapping gp-record@1)",
        "ok   destination gp-mail (mail for message-back, mapping gp-record@1)",
        "ok   platform community-links answers referrals delivered to links-lamplight",
        "ok   platform wellbeing-connectors answers referrals delivered to connectors-sheet",
    ] {
        assert!(out.contains(want), "{want}\n{out}");
    }
    assert!(
        !out.contains("WARN"),
        "no Scottish practice has a mesh writer\n{out}"
    );
}

/// The same broken configuration gives the same problems, each named by its key,
/// whether `check` or start-up (`serve`) meets it.
#[test]
fn check_and_start_up_report_the_same_problems_for_the_same_broken_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    std::fs::write(
        &path,
        format!(
            "[gateway]\ndata_dir = {:?}\n[http]\nenabled = false\n[retry]\ntiers = [\"0s\"]\n\
             [referrals]\ndestinations = [\"hook\", \"nowhere\", \"lamp\"]\n\
             [destinations.hook]\nkind = \"webhook\"\nurl = \"http://clw.example.org/in\"\n\
             token = {{ env = \"CLW_TEST_SURELY_UNSET_1\" }}\nallow = [\"referral_details\"]\n\
             [destinations.lamp]\nkind = \"lamplight\"\nlampid = \"1\"\nproject = \"2\"\n\
             key = {{ env = \"CLW_TEST_SURELY_UNSET_2\", file = \"/x\" }}\n\
             person_mapping = \"no-such-mapping\"\nmapping = \"lamplight-referral\"\nallow = [\"referral_details\"]\n\
             [destinations.typo]\nkind = \"webhook\"\nurl = \"https://x.example.org\"\nallow = [\"consent\"]\ntimeot = \"5s\"\n\
             [message_back]\nwriters = []\n",
            dir.path().display().to_string()
        ),
    )
    .unwrap();
    let problems = |o: &Output| -> Vec<String> {
        let mut p: Vec<String> = text(o)
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("- "))
            .map(str::to_string)
            .collect();
        p.sort();
        p
    };
    let config = path.to_str().unwrap();
    let check = gateway(&["--config", config, "check"], &[]);
    let serve = gateway(&["--config", config, "serve"], &[]);
    assert_eq!(check.status.code(), Some(1), "{}", text(&check));
    assert_eq!(serve.status.code(), Some(2), "{}", text(&serve));
    let (from_check, from_serve) = (problems(&check), problems(&serve));
    assert_eq!(from_check, from_serve);
    for key in [
        "retry.tiers:",
        "referrals.destinations[1]: no destination named \"nowhere\"",
        "destinations.hook.url: must be https://",
        "destinations.hook.token: environment variable CLW_TEST_SURELY_UNSET_1 is not set",
        "destinations.lamp.key: set env or file, not both",
        "destinations.lamp.person_mapping: no mapping \"no-such-mapping\"",
        "destinations.hook.allow: mapping prsb-referral reads",
        "destinations.typo: unknown field `timeot`",
        "message_back.writers: must name at least one record writer",
    ] {
        assert!(
            from_check.iter().any(|p| p.starts_with(key)),
            "{key}\n{from_check:#?}"
        );
    }
}

/// Settings that would do nothing are refused by `check`, naming each key: the event
/// door, a poller and a record writer with the message back off, and the console with
/// the HTTP listener off.
#[test]
fn check_refuses_settings_that_would_do_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    // SAFETY: a value no other test reads.
    unsafe { std::env::set_var("CLW_TEST_IDLE_SECRET", "an-operator-secret-0123") };
    std::fs::write(
        &config,
        format!(
            "[gateway]\ndata_dir = {:?}\n[mappings]\ndir = {:?}\n[http]\nenabled = false\n\
             [ingress]\nenabled = true\n\
             [console]\nenabled = true\n[console.operators.duty]\nsecret = {{ env = \"CLW_TEST_IDLE_SECRET\" }}\n\
             [referrals]\ndestinations = [\"fhir\"]\n\
             [destinations.fhir]\nkind = \"fhir\"\nbase_url = \"http://127.0.0.1:9/fhir\"\nmapping = \"fhir-servicerequest\"\n\
             poll_every = \"1m\"\nallow = {PRSB_ALLOW}\n\
             [destinations.folder]\nkind = \"practice-folder\"\ndir = {:?}\n\
             allow = [\"event\", \"headline\", \"coded\", \"summary\", \"referral\", \"patient\", \"practice\"]\n",
            dir.path().join("data").display().to_string(),
            repo_path("mappings").display().to_string(),
            dir.path().join("practice").display().to_string(),
        ),
    )
    .unwrap();
    let (passed, text) = check_config(&config);
    assert!(!passed, "{text}");
    for key in [
        "ingress.enabled",
        "console.enabled",
        "destinations.fhir.poll_every",
        "destinations.folder",
    ] {
        assert!(text.contains(&format!("{key}:")), "{key} named: {text}");
    }
}
