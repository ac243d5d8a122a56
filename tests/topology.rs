//! The topology keeps messages on RabbitMQ 3.x and 4.x: every queue argument explicit,
//! at-least-once dead-lettering, and a parking queue that people never read (its
//! messages are recorded in the store, listed and replayed from there).

mod common;

use std::collections::BTreeSet;

use clw_gateway::sources::broker::headers;
use clw_gateway::sources::parking::Selection;
use common::*;

/// `rabbitmqctl list_queues name arguments` for the queues of one prefix.
fn queue_arguments(prefix: &str) -> Vec<(String, String)> {
    let out = std::process::Command::new("rabbitmqctl")
        .args(["-q", "list_queues", "name", "arguments"])
        .output()
        .expect("rabbitmqctl runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(&format!("{prefix}.")))
        .map(|l| {
            let (name, args) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            (name.to_string(), args.to_string())
        })
        .collect()
}

#[tokio::test]
async fn every_queue_argument_is_explicit_and_dead_lettering_is_at_least_once() {
    let h = Harness::start("args", &[], &["200ms", "1s"]).await;
    let args = queue_arguments(&h.s.prefix);
    let of = |q: &str| {
        args.iter()
            .find(|(n, _)| n == q)
            .map(|(_, a)| a.clone())
            .unwrap_or_else(|| panic!("{q} declared: {args:?}"))
    };
    let main = of(&h.t.queue());
    for want in [
        "x-queue-type\",\"quorum",
        "x-delivery-limit\",20",
        "x-dead-letter-strategy\",\"at-least-once",
        "x-overflow\",\"reject-publish",
    ] {
        assert!(main.contains(want), "{} lacks {want}: {main}", h.t.queue());
    }
    for tier in 0..2 {
        let q = of(&h.t.retry_queue(tier));
        for want in [
            "x-queue-type\",\"quorum",
            "x-message-ttl",
            "x-dead-letter-strategy\",\"at-least-once",
            "x-overflow\",\"reject-publish",
        ] {
            assert!(q.contains(want), "tier {tier} lacks {want}: {q}");
        }
    }
    let parked = of(&h.t.parked_queue());
    for want in [
        "x-queue-type\",\"quorum",
        "x-delivery-limit\",10000",
        "x-overflow\",\"reject-publish",
    ] {
        assert!(
            parked.contains(want),
            "parking queue lacks {want}: {parked}"
        );
    }
    h.finish().await;
}

#[tokio::test]
async fn listing_the_parking_queue_fifty_times_loses_nothing() {
    let h = Harness::start("list50", &[400, 400, 400], &["200ms"]).await;
    let ids: Vec<String> = (0..3).map(|_| unique("ref")).collect();
    for id in &ids {
        h.publish(id, &referral()).await;
    }
    let first = h.wait_parked("referral", 3).await;
    let keys: BTreeSet<String> = first.iter().map(|p| p.key.clone()).collect();
    for round in 0..50 {
        let listed = common::dlq_list(&h.t, &h.gw.store).await.unwrap();
        let now: BTreeSet<String> = listed.iter().map(|p| p.key.clone()).collect();
        assert_eq!(now, keys, "round {round}");
    }
    // Still all there, each with what a person needs to act on it, and the body kept.
    let listed = common::dlq_list(&h.t, &h.gw.store).await.unwrap();
    let listed_ids: BTreeSet<&str> = listed.iter().map(|p| p.message_id.as_str()).collect();
    assert_eq!(listed_ids, ids.iter().map(String::as_str).collect());
    for p in &listed {
        assert_eq!(
            (p.stage.as_str(), p.error_class.as_str()),
            ("deliver", "permanent")
        );
        assert!(p.reason.contains("400"), "{}", p.reason);
        let body = h.gw.store.parked_body(&p.key).await.unwrap().unwrap();
        assert_eq!(body.body.unwrap().len() as i64, p.body_bytes);
        assert!(body.headers.contains_key(headers::PARKED_AT));
    }
    assert_eq!(h.rabbit.queue_len(&h.t.parked_queue()).await, 0);
    h.finish().await;
}

#[tokio::test]
async fn replay_all_replays_each_parked_message_once_and_stops() {
    // The platform refuses everything: each replayed message is parked again.
    let h = Harness::start("replayall", &[400; 12], &["200ms"]).await;
    // An old parked message whose body retention has removed: reported, passed over.
    let old = unique("ref");
    h.publish(&old, &referral()).await;
    h.wait_parked("referral", 1).await;
    let removed = h.gw.store.purge_bodies(i64::MAX, false).await.unwrap();
    assert_eq!(removed, 1);
    let ids: Vec<String> = (0..3).map(|_| unique("ref")).collect();
    for id in &ids {
        h.publish(id, &referral()).await;
    }
    h.wait_parked("referral", 4).await;
    let done = common::dlq_replay(&h.t, Selection::All, &h.gw.store, "tester")
        .await
        .unwrap();
    assert_eq!(done.not_replayable.len(), 1, "{:?}", done.not_replayable);
    assert!(
        done.not_replayable[0].contains(&old) && done.not_replayable[0].contains("no stored body"),
        "{:?}",
        done.not_replayable
    );
    let replayed = done.ids;
    let mut sorted = replayed.clone();
    sorted.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(sorted, want, "each once");
    // Parked again by the refusing platform: new records, the old ones marked replayed.
    h.wait_parked("referral", 4).await;
    let all =
        h.gw.store
            .parked(Some("referral"), None, 100)
            .await
            .unwrap();
    assert_eq!(all.len(), 7, "the old one stays parked");
    let replayed_rows: Vec<_> = all.iter().filter(|p| p.state == "replayed").collect();
    assert_eq!(replayed_rows.len(), 3);
    assert!(
        replayed_rows
            .iter()
            .all(|p| p.replayed_by.as_deref() == Some("tester"))
    );
    assert_eq!(
        h.hook.count(),
        7,
        "each sent once, then once more after the replay (the old one once)"
    );
    h.finish().await;
}

#[tokio::test]
async fn a_message_parked_while_no_gateway_runs_is_listed_and_replayed_from_the_store() {
    let s = Setup::new("nogw");
    let hook = Receiver::start(&[]).await;
    let config = s.broker_config(&hook.url, &["200ms"]);
    let rabbit = Rabbit::connect().await;
    let t = rabbit.declare(&config).await;
    // Parked by RabbitMQ itself, as its delivery limit would: straight to the DLX.
    let id = unique("ref");
    rabbit
        .publish(
            &t.dead_letter_exchange(),
            referral().to_string().as_bytes(),
            &ce_headers(&id),
        )
        .await;
    let (store, _dir) = temp_store().await;
    let listed = common::dlq_list(&t, &store).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].message_id, id);
    assert_eq!(listed[0].stage, "broker");
    assert_eq!(
        rabbit.queue_len(&t.parked_queue()).await,
        0,
        "moved, not copied"
    );

    // Replayed from the store into the flow's queue, unchanged.
    let replayed = common::dlq_replay(&t, Selection::Id(&id), &store, "tester")
        .await
        .unwrap()
        .ids;
    assert_eq!(replayed, vec![id.clone()]);
    eventually("the replayed message queued", WAIT, || async {
        (rabbit.queue_len(&t.queue()).await == 1).then_some(())
    })
    .await;
    assert!(common::dlq_list(&t, &store).await.unwrap().is_empty());
    let audit = store.audit("referral", &id).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.entry.action.as_str() == "replayed" && a.entry.actor == "tester")
    );
    rabbit.cleanup(&t).await;
}
