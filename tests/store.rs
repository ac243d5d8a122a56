//! The store on SQLite and on PostgreSQL: migrations, state, idempotency rows, audit.

mod common;

use clw_gateway::engine::{AuditAction, DeliveryState, MessageState};
use clw_gateway::store::writer_types::{DeliveryUpdate, ErrorSummary};
use clw_gateway::store::{AuditEntry, Backend, Store, Write};
use common::*;

fn outcome(id: &str, state: &str, attempts: i64, dest_state: &str) -> Write {
    Write::Outcome {
        flow: "referral".into(),
        message_id: id.into(),
        state: MessageState::parse(state).unwrap(),
        attempts,
        error: (state != "delivered").then(|| ErrorSummary {
            class: "transient".into(),
            stage: "deliver".into(),
            reason: "clw answered 503".into(),
        }),
        deliveries: vec![DeliveryUpdate {
            destination: "clw".into(),
            state: DeliveryState::parse(dest_state).unwrap(),
            idempotency_key: "key-1".into(),
            response_status: (dest_state == "delivered").then_some(200),
            last_error: None,
        }],
        audit: vec![AuditEntry {
            actor: "gw-test".into(),
            action: if state == "delivered" {
                AuditAction::Delivered
            } else {
                AuditAction::Retry
            },
            flow: "referral".into(),
            message_id: id.into(),
            destination: Some("clw".into()),
            fields: vec![
                "person_demographics.nhs_number".into(),
                "referral_details.status".into(),
            ],
            agreement: Some("DSA-1".into()),
            detail: None,
        }],
    }
}

fn received(id: &str) -> Write {
    Write::Received {
        flow: "referral".into(),
        message_id: id.into(),
        source: "amqp:test".into(),
        body_sha256: "sha256:00".into(),
    }
}

async fn exercise(store: &Store) {
    let id = unique("msg");
    store.write(received(&id)).await.unwrap();
    let m = store.message("referral", &id).await.unwrap().unwrap();
    assert_eq!((m.state.as_str(), m.attempts), ("received", 0));

    store
        .write(outcome(&id, "retrying", 1, "retrying"))
        .await
        .unwrap();
    store
        .write(outcome(&id, "delivered", 2, "delivered"))
        .await
        .unwrap();
    // a redelivery marks it received again without undoing the outcome
    store.write(received(&id)).await.unwrap();
    let m = store.message("referral", &id).await.unwrap().unwrap();
    assert_eq!(
        (m.state.as_str(), m.attempts, m.last_error),
        ("delivered", 2, None)
    );
    let d = store.deliveries("referral", &id).await.unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(
        (d[0].state.as_str(), d[0].attempts, d[0].response_status),
        ("delivered", 2, Some(200))
    );
    assert!(d[0].delivered_at.is_some());
    let audit = store.audit("referral", &id).await.unwrap();
    assert_eq!(
        audit
            .iter()
            .map(|a| a.entry.action.as_str())
            .collect::<Vec<_>>(),
        vec!["retry", "delivered"]
    );
    assert_eq!(
        audit[1].entry.fields,
        vec!["person_demographics.nhs_number", "referral_details.status"]
    );
    assert_eq!(store.find_message(&id).await.unwrap().len(), 1);

    // group commit: many concurrent writers, every write lands
    let ids: Vec<String> = (0..200).map(|i| format!("{id}-{i}")).collect();
    let writes = ids
        .iter()
        .map(|i| store.write(outcome(i, "delivered", 1, "delivered")));
    for r in futures_util::future::join_all(writes).await {
        r.unwrap();
    }
    for i in ids.iter().step_by(37) {
        assert_eq!(
            store.message("referral", i).await.unwrap().unwrap().state,
            "delivered"
        );
    }
    assert!(
        store
            .message("referral", "no-such-id")
            .await
            .unwrap()
            .is_none()
    );
    store.ping().await.unwrap();
}

/// The dataset's facts: written once however often they come, read a page at a time in
/// (day, id) order within a programme and period, their events by referral, purged by age;
/// the link key made once and kept.
async fn exercise_dataset(store: &Store) {
    use clw_gateway::store::Write;
    let programme = unique("prog");
    let facts = |i: usize| Write::DatasetReferral {
        message_id: format!("{programme}-r{i}"),
        programme: programme.clone(),
        referred_on: format!("2026-11-{:02}", 10 + i % 3),
        person_ref: Some(format!("{i:064x}")),
        facts: format!("{{\"n\":{i}}}"),
    };
    let event = |i: usize, k: usize| Write::DatasetEvent {
        event_message_id: format!("{programme}-r{i}-e{k}"),
        referral_id: format!("{programme}-r{i}"),
        facts: format!("{{\"k\":{k}}}"),
    };
    let mut all = Vec::new();
    for i in 0..5 {
        all.push(facts(i));
        all.push(event(i, 0));
        all.push(event(i, 1));
    }
    store.write(Write::Many(all)).await.unwrap();
    // A second copy changes nothing.
    store.write(facts(0)).await.unwrap();
    store.write(event(0, 0)).await.unwrap();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .dataset_referrals(&programme, "2026-11-10", "2026-11-11", after.as_ref(), 2)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some((last.referred_on.clone(), last.message_id.clone()));
        seen.extend(
            page.iter()
                .map(|r| (r.referred_on.clone(), r.message_id.clone())),
        );
    }
    // Days 10 and 11 only (r0, r3 on the 10th; r1, r4 on the 11th), in order.
    let want: Vec<(String, String)> = [(10, 0), (10, 3), (11, 1), (11, 4)]
        .iter()
        .map(|(d, i)| (format!("2026-11-{d}"), format!("{programme}-r{i}")))
        .collect();
    assert_eq!(seen, want);
    let ids: Vec<String> = (0..5).map(|i| format!("{programme}-r{i}")).collect();
    let events = store.dataset_events(&ids).await.unwrap();
    assert_eq!(events.len(), 10);
    assert_eq!(
        store.dataset_link_key().await.unwrap(),
        store.dataset_link_key().await.unwrap()
    );
    assert_eq!(store.dataset_link_key().await.unwrap().len(), 32);
    // Nothing is older than a minute ago; everything is older than a minute ahead.
    let now = chrono::Utc::now().timestamp_millis();
    assert_eq!(store.purge_dataset(now - 60_000, false).await.unwrap(), 0);
    assert!(store.purge_dataset(now + 60_000, true).await.unwrap() >= 5);
    assert!(store.purge_dataset(now + 60_000, false).await.unwrap() >= 5);
    assert!(store.dataset_events(&ids).await.unwrap().is_empty());
}

/// A destination's inbox: what it held that could not be acted on, kept once and listed;
/// sends still awaiting an acknowledgement, with their practice and whether a person was
/// told; a delivery's acknowledgement sub-state; what the practice said, in the dataset.
async fn exercise_inbox(store: &Store) {
    use clw_gateway::store::Write;
    use clw_gateway::store::writer_types::EffectRecord;
    let dest = unique("mesh");
    let headers = vec![("mex-workflowid".to_string(), "X_ACK".to_string())];
    assert!(
        store
            .keep_inbox(
                &dest,
                "m1",
                Some("X_ACK"),
                "not understood",
                &headers,
                b"body"
            )
            .await
            .unwrap()
    );
    assert!(
        !store
            .keep_inbox(
                &dest,
                "m1",
                Some("X_ACK"),
                "not understood",
                &headers,
                b"body"
            )
            .await
            .unwrap()
    );
    let kept: Vec<_> = store
        .inbox_kept(1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|k| k.destination == dest)
        .collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(
        (kept[0].body_bytes, kept[0].workflow.as_deref()),
        (4, Some("X_ACK"))
    );

    let step = |id: &str, step: &str, value: &str| {
        Write::Effect(EffectRecord {
            flow: "message-back".into(),
            message_id: id.into(),
            destination: dest.clone(),
            step: step.into(),
            state: "done".into(),
            value: Some(value.into()),
        })
    };
    let (a, b) = (format!("{dest}:a"), format!("{dest}:b"));
    store.write(step(&a, "mesh-send", "m-a")).await.unwrap();
    store.write(step(&b, "mesh-send", "m-b")).await.unwrap();
    store
        .write(step(&b, "ack-infrastructure", "received 20013 Success"))
        .await
        .unwrap();
    let later = chrono::Utc::now().timestamp_millis() + 60_000;
    let waiting = store
        .awaiting_answer(
            &dest,
            "mesh-send",
            "ack-infrastructure",
            "ack-infrastructure-overdue",
            later,
        )
        .await
        .unwrap();
    assert_eq!(
        waiting
            .iter()
            .map(|w| w.message_id.as_str())
            .collect::<Vec<_>>(),
        [a.as_str()]
    );
    assert!(!waiting[0].told && waiting[0].practice.is_none());
    assert!(
        store
            .first_to_record("message-back", &a, &dest, "ack-infrastructure-overdue", "1")
            .await
            .unwrap(),
        "the first to record it"
    );
    assert!(
        !store
            .first_to_record("message-back", &a, &dest, "ack-infrastructure-overdue", "2")
            .await
            .unwrap(),
        "the second is told it is there"
    );
    let waiting = store
        .awaiting_answer(
            &dest,
            "mesh-send",
            "ack-infrastructure",
            "ack-infrastructure-overdue",
            later,
        )
        .await
        .unwrap();
    assert!(waiting[0].told, "told once");
    assert!(
        store
            .awaiting_answer(
                &dest,
                "mesh-send",
                "ack-infrastructure",
                "ack-infrastructure-overdue",
                0
            )
            .await
            .unwrap()
            .is_empty(),
        "nothing sent before the epoch"
    );
    assert_eq!(
        store
            .ack_state("message-back", &a, &dest)
            .await
            .unwrap()
            .as_deref(),
        Some("accepted by MESH, no acknowledgement yet")
    );
    assert_eq!(
        store
            .ack_state("message-back", &b, &dest)
            .await
            .unwrap()
            .as_deref(),
        Some("received by the practice (20013 Success)")
    );
    store
        .write(step(&b, "ack-business", "filed 30001 Patient known here"))
        .await
        .unwrap();
    assert_eq!(
        store
            .ack_state("message-back", &b, &dest)
            .await
            .unwrap()
            .as_deref(),
        Some("filed at the practice (30001 Patient known here)")
    );
    assert_eq!(
        store
            .ack_state("message-back", &b, "elsewhere")
            .await
            .unwrap(),
        None
    );

    store
        .write(Write::DatasetEvent {
            event_message_id: b.clone(),
            referral_id: format!("{dest}:r"),
            facts: "{\"kind\":\"contact\"}".into(),
        })
        .await
        .unwrap();
    store.dataset_event_acknowledged(&b, "filed").await.unwrap();
    store
        .dataset_event_acknowledged(&b, "received")
        .await
        .unwrap();
    let facts = store.dataset_events(&[format!("{dest}:r")]).await.unwrap();
    assert!(
        facts[0].facts.contains("\"practice_ack\":\"filed\""),
        "{}",
        facts[0].facts
    );
}

#[tokio::test]
async fn sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/nested/store.db?mode=rwc", dir.path().display());
    let store = Store::connect(&url, 4, 64).await.unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    exercise(&store).await;
    exercise_dataset(&store).await;
    exercise_inbox(&store).await;
    store.close().await;
    // migrations are idempotent: a second start finds the same data
    let again = Store::connect(&url, 4, 64).await.unwrap();
    assert_eq!(
        again.count_by_state("referral").await.unwrap(),
        vec![("delivered".to_string(), 201)]
    );
    again.close().await;
}

#[tokio::test]
async fn postgres_store() {
    let (schema, url) = PgSchema::create().await;
    let store = Store::connect(&url, 4, 64).await.unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    exercise(&store).await;
    exercise_dataset(&store).await;
    exercise_inbox(&store).await;
    store.close().await;
    let again = Store::connect(&url, 4, 64).await.unwrap();
    assert_eq!(
        again.count_by_state("referral").await.unwrap(),
        vec![("delivered".to_string(), 201)]
    );
    again.close().await;
    schema.drop_it().await;
}

#[tokio::test]
async fn gateway_runs_on_postgres() {
    let (schema, url) = PgSchema::create().await;
    let h = Harness::start_with("pg", &[], &["300ms"], |c| c.store.url = Some(url)).await;
    let id = unique("ref");
    h.publish(&id, &referral()).await;
    h.wait_state(&id, "delivered").await;
    assert_eq!(h.hook.count(), 1);
    h.finish().await;
    schema.drop_it().await;
}

/// A referral's versions and ending on either backend: any version's id names the one
/// referral, one first version per identity, the first ending stands, the unanswered
/// sweep's query, and retention keeping the ending for the dataset.
async fn exercise_lifecycle(store: &Store) {
    use clw_gateway::model::lifecycle::{Change, Lifecycle};
    let (first, amended, remind) = (unique("ref"), unique("ref"), unique("remind"));
    let programme = unique("prog");
    let identity = format!("B86003|https://practice.example/referrals|{}", unique("R"));
    let version =
        |id: &str, change: Change, identity: Option<&str>, fields: &[&str]| Write::Version {
            message_id: id.into(),
            referral_id: first.clone(),
            identity: identity.map(str::to_string),
            change,
            fields: fields.iter().map(|f| f.to_string()).collect(),
            fingerprint: format!("{{\"a\":\"{id}\"}}"),
            consent: identity.map(|_| {
                if change == Change::New {
                    "full"
                } else {
                    "codes-only"
                }
                .to_string()
            }),
        };
    store
        .write(Write::Many(vec![
            received(&first),
            Write::Referral {
                message_id: first.clone(),
                programme: programme.clone(),
                practice: Some("B86003".into()),
                patient_key: None,
                record: r#"{"consent":"full"}"#.into(),
            },
            version(&first, Change::New, Some(&identity), &[]),
        ]))
        .await
        .unwrap();
    store
        .write(outcome(&first, "delivered", 1, "delivered"))
        .await
        .unwrap();
    let r = store.referral(&first).await.unwrap().unwrap();
    assert_eq!((r.ended.clone(), r.consent()), (None, Some("full")));

    store
        .write(version(
            &amended,
            Change::Amend,
            Some(&identity),
            &["person_demographics.telecom.value"],
        ))
        .await
        .unwrap();
    let by_version = store.referral(&amended).await.unwrap().unwrap();
    assert_eq!(
        by_version.message_id, first,
        "a version's id names the referral"
    );
    assert_eq!(
        by_version.consent(),
        Some("codes-only"),
        "the latest version's consent"
    );
    let latest = store.latest_version(&identity).await.unwrap().unwrap();
    assert_eq!(
        (
            latest.message_id.as_str(),
            latest.change,
            latest.fields.clone()
        ),
        (
            amended.as_str(),
            Change::Amend,
            vec!["person_demographics.telecom.value".to_string()]
        )
    );
    assert_eq!(latest.fingerprint.get("a"), Some(&amended));
    // A second first version of the same identity is refused by the store.
    let twin = unique("ref");
    let mut second = version(&twin, Change::New, Some(&identity), &[]);
    if let Write::Version { referral_id, .. } = &mut second {
        *referral_id = twin.clone();
    }
    assert!(
        store.write(second).await.is_err(),
        "one referral per identity"
    );

    let later = store.now() + 60_000;
    let waiting = store.unanswered(&programme, later).await.unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(
        (waiting[0].referral_id.as_str(), waiting[0].reminders),
        (first.as_str(), 0)
    );
    store
        .write(version(&remind, Change::Remind, None, &[]))
        .await
        .unwrap();
    let waiting = store.unanswered(&programme, later).await.unwrap();
    assert_eq!(waiting[0].reminders, 1);
    assert!(waiting[0].last_reminder.is_some());

    let ended = |state: Lifecycle, by: &str| Write::Ended {
        referral_id: first.clone(),
        state,
        by_message: by.into(),
        reason: "the practice cancelled the referral".into(),
    };
    store
        .write(ended(Lifecycle::Cancelled, &amended))
        .await
        .unwrap();
    store
        .write(ended(Lifecycle::Withdrawn, &remind))
        .await
        .unwrap();
    let e = store.ended(&first).await.unwrap().unwrap();
    assert_eq!(
        (e.state, e.by_message.as_str()),
        (Lifecycle::Cancelled, amended.as_str()),
        "the first end stands"
    );
    assert!(
        store
            .unanswered(&programme, later)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.lifecycle_counts().await.unwrap().contains(&(
        programme.clone(),
        "cancelled".to_string(),
        1
    )));
    let versions: Vec<Change> = store
        .versions(&first)
        .await
        .unwrap()
        .iter()
        .map(|v| v.change)
        .collect();
    assert_eq!(versions, [Change::New, Change::Amend, Change::Remind]);

    // Retention removes the record and its versions; the ending stays for the dataset.
    store.purge_referrals(i64::MAX, false).await.unwrap();
    assert!(store.referral(&first).await.unwrap().is_none());
    assert!(store.versions(&first).await.unwrap().is_empty());
    assert_eq!(
        store
            .endings(std::slice::from_ref(&first))
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn lifecycle_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/store.db?mode=rwc", dir.path().display());
    let store = Store::connect(&url, 4, 64).await.unwrap();
    exercise_lifecycle(&store).await;
    store.close().await;
}

#[tokio::test]
async fn lifecycle_on_postgres() {
    let (schema, url) = PgSchema::create().await;
    let store = Store::connect(&url, 4, 64).await.unwrap();
    exercise_lifecycle(&store).await;
    store.close().await;
    schema.drop_it().await;
}
