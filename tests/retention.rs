//! Retention: patient data does not stay on disk or in the store past its period;
//! what holds it is owner-only; each purge is audited (how many, never whose).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use clw_gateway::app;
use common::*;
use sqlx::Connection as _;

const DAY: Duration = Duration::from_secs(86_400);

fn config_text(s: &Setup, extra: &str) -> String {
    format!(
        "[gateway]\ninstance = \"{p}\"\ndata_dir = \"{d}\"\n[store]\nurl = \"{u}\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\n[spool]\npoll_interval = \"100ms\"\n\
         [referrals]\ndestinations = [\"files\", \"sheet\"]\n\
         [destinations.files]\nkind = \"file\"\ndir = \"{d}/outbox\"\nallow = {PRSB_ALLOW}\n\
         [destinations.sheet]\nkind = \"csv\"\ndir = \"{d}/sheets\"\nmapping = \"csv-referral\"\n\
         allow = [\"person_demographics\", \"gp_practice\", \"referral_details\", \"referrer_details\"]\n\
         [mappings]\ndir = \"{m}\"\n{extra}",
        p = s.prefix,
        d = s.dir.path().display(),
        u = s.store_url,
        m = repo_path("mappings").display(),
    )
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'));
    v.sort();
    v
}

fn age(path: &Path, by: Duration) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - by).unwrap();
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn cli(config: &Path, args: &[&str]) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_clw-gateway"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("CLW_CONFIG")
        .output()
        .unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[tokio::test]
async fn purge_removes_patient_data_past_its_period_and_audits_it() {
    let s = Setup::new("purge");
    let d = s.dir.path();
    let cfg = d.join("gateway.toml");
    std::fs::write(&cfg, config_text(&s, "")).unwrap();
    let config = clw_gateway::config::Config::load(Some(&cfg), Vec::new()).unwrap();
    let gw = app::start(config).await.unwrap();
    let inbox = d.join("spool/referrals/inbox");
    std::fs::write(
        inbox.join("old.json"),
        referral_with_id("old-1").to_string(),
    )
    .unwrap();
    std::fs::write(
        inbox.join("new.json"),
        referral_with_id("new-1").to_string(),
    )
    .unwrap();
    let mut bad = referral_with_id("bad-1");
    bad["entry"][2]["resource"]["identifier"][0]["value"] = serde_json::json!("12345");
    std::fs::write(inbox.join("bad.json"), bad.to_string()).unwrap();
    eventually("all three settled", WAIT, || async {
        (files_in(&d.join("spool/referrals/done")).len() == 2
            && files_in(&d.join("spool/referrals/failed")).len() == 2
            && files_in(&d.join("outbox")).len() == 2)
            .then_some(())
    })
    .await;
    eventually("the parked copy recorded", WAIT, || async {
        (gw.store
            .parked(Some("referral"), None, 10)
            .await
            .unwrap()
            .len()
            == 1)
            .then_some(())
    })
    .await;
    gw.stop().await.unwrap();

    // Everything holding patient data is owner-only.
    let db = d.join("gw.db");
    let mut holding: Vec<PathBuf> = vec![db.clone()];
    for dir in [
        "spool/referrals/done",
        "spool/referrals/failed",
        "outbox",
        "sheets",
    ] {
        holding.extend(files_in(&d.join(dir)));
    }
    for f in &holding {
        assert_eq!(mode(f), 0o600, "{} is {:o}", f.display(), mode(f));
    }

    // Make "old-1" and the parked copy old, as time would.
    let outbox_old = files_in(&d.join("outbox"))
        .into_iter()
        .find(|p| p.to_string_lossy().contains("old-1"))
        .unwrap();
    age(&d.join("spool/referrals/done/old.json"), 10 * DAY);
    age(&outbox_old, 40 * DAY);
    for f in files_in(&d.join("spool/referrals/failed")) {
        age(&f, 40 * DAY);
    }
    let sheet = files_in(&d.join("sheets")).remove(0);
    age(&sheet, 100 * DAY);
    let mut db_conn = sqlx::SqliteConnection::connect(&s.store_url).await.unwrap();
    let now = clw_gateway::store::now_ms();
    for (sql, days) in [
        (
            "UPDATE messages SET updated_at = $1 WHERE message_id = 'old-1'",
            500,
        ),
        ("UPDATE parked SET parked_at = $1", 40),
        (
            "UPDATE audit_log SET at = $1 WHERE message_id = 'old-1'",
            3000,
        ),
    ] {
        sqlx::query(sql)
            .bind(now - days * 86_400_000)
            .execute(&mut db_conn)
            .await
            .unwrap();
    }
    db_conn.close().await.unwrap();

    // A dry run counts and removes nothing.
    let (ok, out) = cli(&cfg, &["purge", "--dry-run"]);
    assert!(ok, "{out}");
    assert!(out.contains("spool_done   would remove 1"), "{out}");
    assert!(d.join("spool/referrals/done/old.json").exists());

    let (ok, out) = cli(&cfg, &["purge", "--actor", "it-team"]);
    assert!(ok, "{out}");
    for line in [
        "spool_done   removed 1",
        "spool_failed removed 2",
        "outboxes     removed 1",
        "sheets       removed 1",
        "bodies       removed 1",
        "rows         removed 1",
        "audit        removed ",
    ] {
        assert!(out.contains(line), "{line:?} in {out}");
    }
    // Past its period: gone. Within it: kept.
    assert!(!d.join("spool/referrals/done/old.json").exists());
    assert!(d.join("spool/referrals/done/new.json").exists());
    assert!(!outbox_old.exists());
    assert_eq!(files_in(&d.join("outbox")).len(), 1);
    assert!(files_in(&d.join("spool/referrals/failed")).is_empty());
    assert!(!sheet.exists());

    let store = clw_gateway::store::Store::connect(&s.store_url, 2, 16)
        .await
        .unwrap();
    assert!(store.message("referral", "old-1").await.unwrap().is_none());
    assert!(store.message("referral", "new-1").await.unwrap().is_some());
    let parked = store.parked(Some("referral"), None, 10).await.unwrap();
    assert_eq!(parked.len(), 1, "the record stays; its body does not");
    let body = store.parked_body(&parked[0].key).await.unwrap().unwrap();
    assert_eq!(body.body, None);
    let parked_id = parked[0].message_id.clone();
    // Audited with who and how many, never whose.
    let audit = store.audit("all", "-").await.unwrap();
    let purged: Vec<&str> = audit
        .iter()
        .filter(|a| a.entry.action.as_str() == "purged" && a.entry.actor == "it-team")
        .filter_map(|a| a.entry.detail.as_deref())
        .collect();
    assert!(
        purged
            .iter()
            .any(|d| d.starts_with("removed 1 spool_done past retention (7days)")),
        "{purged:?}"
    );
    assert!(
        purged
            .iter()
            .all(|d| !d.contains("old-1") && !d.contains(&parked_id))
    );
    store.close().await;

    // A parked message whose body is gone says so instead of replaying nothing.
    let (ok, out) = cli(&cfg, &["dlq", "replay", &parked_id]);
    assert!(!ok);
    assert!(out.contains("removed by retention"), "{out}");
}

#[tokio::test]
async fn the_running_service_applies_retention_on_its_own() {
    let s = Setup::new("retain");
    let d = s.dir.path();
    let cfg = d.join("gateway.toml");
    std::fs::write(
        &cfg,
        config_text(&s, "[retention]\nevery = \"1s\"\nspool_done = \"2s\"\n"),
    )
    .unwrap();
    let config = clw_gateway::config::Config::load(Some(&cfg), Vec::new()).unwrap();
    let gw = app::start(config).await.unwrap();
    let inbox = d.join("spool/referrals/inbox");
    std::fs::write(
        inbox.join("r.json"),
        referral_with_id("kept-briefly").to_string(),
    )
    .unwrap();
    let done = d.join("spool/referrals/done/r.json");
    eventually("processed", WAIT, || async { done.exists().then_some(()) }).await;
    eventually("removed by the service after its period", WAIT, || async {
        (!done.exists()).then_some(())
    })
    .await;
    eventually("counted", WAIT, || async {
        gw.metrics
            .render()
            .contains("clw_gateway_purged_total{kind=\"spool_done\"} 1")
            .then_some(())
    })
    .await;
    let audit = gw.store.audit("all", "-").await.unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.entry.action.as_str() == "purged" && a.entry.actor == "retention")
    );
    gw.stop().await.unwrap();
}
