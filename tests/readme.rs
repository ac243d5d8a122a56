//! The README's message-back walk-through, run as it is written: the example referral
//! copied into the embedded default's spool, the event it echoes dropped in the events
//! inbox, and the document it promises found in the practice folder. The commands are
//! read from README.md itself, so the test fails when the README and the gateway part.

mod common;

use std::time::Duration;

use clw_gateway::app;
use common::*;
use serde_json::Value;

/// The walk-through's shell block: the one after "The embedded default runs it".
fn walk_through(readme: &str) -> &str {
    let from = readme
        .find("The embedded default runs it")
        .expect("the README's message-back walk-through");
    readme[from..]
        .split("```bash")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a bash block")
}

#[tokio::test]
async fn the_readme_message_back_walk_through_works_as_written() {
    let readme = std::fs::read_to_string(repo_path("README.md")).unwrap();
    let block = walk_through(&readme);
    let echoed = block
        .split("echo '")
        .nth(1)
        .and_then(|b| b.split("' >").next())
        .expect("the echoed event");
    let event: Value = serde_json::from_str(echoed).expect("the echoed event is JSON");
    let promised = block
        .split("→ ")
        .nth(1)
        .and_then(|b| b.split_whitespace().next())
        .and_then(|p| p.strip_prefix("data/"))
        .expect("the document it promises, under data/");
    assert!(block.contains("cp examples/referral-bundle.json data/spool/referrals/inbox/"));
    assert!(block.contains("data/spool/events/inbox/"));

    // The embedded default, exactly: no configuration of the test's own.
    let s = Setup::new("readme");
    let mut config = s.config("");
    config.referrals.consent_covers.clear();
    let data = s.dir.path().to_path_buf();
    let gw = app::start(config).await.unwrap();
    std::fs::copy(
        repo_path("examples/referral-bundle.json"),
        data.join("spool/referrals/inbox/referral-bundle.json"),
    )
    .unwrap();
    let id = event["referral"]["message_id"].as_str().unwrap();
    wait_message(&gw.store, "referral", id, "delivered").await;
    let tmp = data.join("evt-1.json.tmp");
    std::fs::write(&tmp, echoed).unwrap();
    std::fs::rename(&tmp, data.join("spool/events/inbox/evt-1.json")).unwrap();
    let doc = data.join(promised);
    let text = eventually("the promised document", Duration::from_secs(20), || async {
        std::fs::read_to_string(&doc).ok()
    })
    .await;
    assert!(text.contains("SNOMED CT  871731000000106"), "{text}");
    assert!(
        doc.with_extension("json").exists(),
        "and its .json beside it"
    );
    gw.stop().await.unwrap();
}
