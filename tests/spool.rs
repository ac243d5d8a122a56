//! The embedded default: spool folders and SQLite, no broker.

mod common;

use std::time::Duration;

use clw_gateway::app;
use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn spool_mode_processes_dropped_files_without_a_broker() {
    let s = Setup::new("spool");
    let hook = Receiver::start(&[503]).await;
    let outbox = s.dir.path().join("outbox");
    // Deliberately no [broker]; a webhook and the file outbox both receive each referral.
    let config = s.config(&format!(
        "[retry]\ntiers = [\"200ms\"]\n[referrals]\ndestinations = [\"clw\", \"files\"]\n\
         [destinations.clw]\nkind = \"webhook\"\nurl = \"{}\"\nallow = {PRSB_ALLOW}\n\
         [destinations.files]\nkind = \"file\"\ndir = \"{}\"\nallow = {PRSB_ALLOW}\n",
        hook.url,
        outbox.display(),
    ));
    assert!(config.broker.is_none());
    let spool = s.dir.path().join("spool/referrals");
    let gw = app::start(config).await.unwrap();

    // Writers drop files by rename, so the gateway never sees half a file.
    let good = referral();
    std::fs::write(s.dir.path().join("r1.tmp"), good.to_string()).unwrap();
    std::fs::rename(s.dir.path().join("r1.tmp"), spool.join("inbox/r1.json")).unwrap();
    let mut bad = referral();
    bad["entry"][2]["resource"]["identifier"][0]["value"] = json!("12345");
    std::fs::write(spool.join("inbox/bad.json"), bad.to_string()).unwrap();

    let done = spool.join("done/r1.json");
    eventually("r1 done", Duration::from_secs(20), || async {
        done.exists().then_some(())
    })
    .await;
    let reason_path = spool.join("failed/bad.json.reason.json");
    eventually("bad failed", Duration::from_secs(20), || async {
        reason_path.exists().then_some(())
    })
    .await;
    assert!(spool.join("failed/bad.json").exists());
    assert!(
        std::fs::read_dir(spool.join("inbox"))
            .unwrap()
            .next()
            .is_none(),
        "inbox empty"
    );
    assert!(
        files_under(&spool.join("processing")).is_empty(),
        "processing empty"
    );

    let reason: Value = serde_json::from_slice(&std::fs::read(&reason_path).unwrap()).unwrap();
    assert_eq!(
        reason["field"],
        "Bundle.entry[2].resource.identifier[0].value"
    );
    assert_eq!(reason["error_class"], "permanent");
    assert!(reason["reason"].as_str().unwrap().contains("10 digits"));

    // first webhook answer was 503: retried in-process, then delivered once
    assert_eq!(hook.count(), 2);
    let id = "5b2e6f8a-1c2d-4e3f-8a9b-0c1d2e3f4a5b";
    let m = gw.store.message("referral", id).await.unwrap().unwrap();
    assert_eq!((m.state.as_str(), m.attempts), ("delivered", 2));
    let written: Value =
        serde_json::from_slice(&std::fs::read(outbox.join(format!("{id}.json"))).unwrap()).unwrap();
    assert_eq!(
        written["referral"]["person_demographics"]["nhs_number"],
        "9912003888"
    );
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn files_left_in_processing_are_picked_up_after_a_restart() {
    let s = Setup::new("spool-restart");
    let outbox = s.dir.path().join("outbox");
    let config = s.config(&format!(
        "[referrals]\ndestinations = [\"files\"]\n[destinations.files]\nkind = \"file\"\ndir = \"{}\"\nallow = {PRSB_ALLOW}\n",
        outbox.display(),
    ));
    let spool = s.dir.path().join("spool/referrals");
    // Left by an instance that stopped: its folder, its lock file no longer held.
    std::fs::create_dir_all(spool.join("processing/gw-old")).unwrap();
    std::fs::write(spool.join("processing/gw-old/.lock"), "").unwrap();
    std::fs::write(
        spool.join("processing/gw-old/left.json"),
        referral().to_string(),
    )
    .unwrap();
    let gw = app::start(config).await.unwrap();
    eventually("recovered file done", Duration::from_secs(20), || async {
        spool.join("done/left.json").exists().then_some(())
    })
    .await;
    assert!(
        outbox
            .join("5b2e6f8a-1c2d-4e3f-8a9b-0c1d2e3f4a5b.json")
            .exists()
    );
    gw.stop().await.unwrap();
}

/// Message files anywhere under `dir` (lock files aside).
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else if !p.file_name().unwrap().to_str().unwrap().starts_with('.') {
            out.push(p);
        }
    }
    out
}

/// A second instance on the same folders never takes the first one's in-flight file,
/// and each file is processed once.
#[tokio::test]
async fn a_second_instance_leaves_the_first_ones_in_flight_files_alone() {
    let s = Setup::new("spool-two");
    let hook = Receiver::start(&[]).await;
    hook.hold();
    let spool_dir = s.dir.path().join("spool");
    let config = || {
        s.config(&format!(
            "[spool]\ndir = \"{}\"\npoll_interval = \"50ms\"\n[referrals]\ndestinations = [\"clw\"]\n\
             [destinations.clw]\nkind = \"webhook\"\nurl = \"{}\"\nallow = {PRSB_ALLOW}\n",
            spool_dir.display(),
            hook.url
        ))
    };
    let spool = spool_dir.join("referrals");
    let first = app::start(config()).await.unwrap();
    std::fs::write(spool.join("inbox/r1.json"), referral().to_string()).unwrap();
    // The first instance has it, and is waiting on the platform.
    eventually(
        "the platform to be asked",
        Duration::from_secs(20),
        || async { (hook.count() == 1).then_some(()) },
    )
    .await;
    let claimed = files_under(&spool.join("processing"));
    assert_eq!(claimed.len(), 1, "{claimed:?}");

    let second = app::start(config()).await.unwrap();
    // The second instance has made its own folder (recovery runs right after) and
    // answers; it has not moved the claimed file.
    eventually(
        "the second instance's folder",
        Duration::from_secs(20),
        || async {
            (std::fs::read_dir(spool.join("processing")).unwrap().count() == 2).then_some(())
        },
    )
    .await;
    let readyz = format!("http://{}/readyz", second.http_addr.unwrap());
    eventually(
        "the second instance ready",
        Duration::from_secs(20),
        || async {
            reqwest::get(&readyz)
                .await
                .ok()
                .filter(|r| r.status().is_success())
                .map(drop)
        },
    )
    .await;
    assert!(
        claimed[0].exists(),
        "the first instance's file stayed where it was"
    );
    assert!(files_under(&spool.join("inbox")).is_empty());

    hook.release();
    eventually("r1 done", Duration::from_secs(20), || async {
        spool.join("done/r1.json").exists().then_some(())
    })
    .await;
    assert_eq!(hook.count(), 1, "sent once");
    first.stop().await.unwrap();
    second.stop().await.unwrap();
    assert!(files_under(&spool.join("processing")).is_empty());
}
