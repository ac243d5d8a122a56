//! The operator commands behind `check`, `dlq`, `status` and `mapping`.

pub mod bench;
pub mod dataset;
pub mod golden;
pub mod ig;
pub mod mapping;

use std::process::ExitCode;

use serde_json::json;

use crate::config::Config;
use crate::error::{GatewayError, Result, Stage};
use crate::sources::broker;
use crate::sources::parking;
use crate::store::Store;
use crate::store::timeline::ms;
use crate::wiring::Wiring;

pub(crate) async fn store(config: &Config) -> Result<Store> {
    Store::connect_with(
        &config.store_url(),
        2,
        config.store.batch_max,
        config.store.timeouts(),
    )
    .await
}

/// What a destination's agreement says of the sensitive sections, for `check`.
fn sensitive_line(agreed: &[&str]) -> String {
    let withheld: Vec<&str> = crate::model::SENSITIVE_SECTIONS
        .into_iter()
        .filter(|s| !agreed.contains(s))
        .collect();
    match (agreed.is_empty(), withheld.is_empty()) {
        (true, _) => format!("sensitive sections withheld: {}", withheld.join(", ")),
        (false, true) => format!("sensitive sections agreed: {}", agreed.join(", ")),
        (false, false) => format!(
            "sensitive sections agreed: {}; withheld: {}",
            agreed.join(", "),
            withheld.join(", ")
        ),
    }
}

/// Scottish practices (5-digit practice codes in the routes) whose record writers include
/// a `mesh` writer: MESH Send Document reaches practices in England only, and refuses a
/// CHI-only patient at delivery. A warning, not a failure: the practice's other writers
/// still write.
fn scottish_mesh_writers(w: &Wiring) -> Vec<String> {
    let (Some(routes), Some(mb)) = (&w.referrals.routes, &w.message_back) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (code, programme) in routes.practices() {
        if !crate::model::identifiers::is_scottish_practice_code(code) {
            continue;
        }
        let writers: Vec<String> = match routes.writers_for(Some(code), programme) {
            Some(names) => names.to_vec(),
            None => mb.default_writers.iter().map(|d| d.name.clone()).collect(),
        };
        for name in writers {
            if mb.writers.get(&name).is_some_and(|d| d.kind == "mesh") {
                out.push(format!(
                    "practice {code} is a Scottish practice, and its record writer {name} is a mesh \
                     writer: MESH Send Document reaches practices in England only and refuses a \
                     CHI-only patient (parked); give it docman, mail, fhir-record or practice-folder"
                ));
            }
        }
    }
    out
}

/// What a platform may answer, as `check` reports it: the destinations it speaks for,
/// whether it can link by reference, its AMQP binding and the patient items it must give.
fn platform_line(p: &crate::flows::message_back::Platform) -> String {
    let speaks: Vec<&str> = p.destinations.iter().map(String::as_str).collect();
    let references = match p.references.as_slice() {
        [] => "cannot link by platform_reference (none of its destinations records references)"
            .to_string(),
        r => format!(
            "links by platform_reference recorded by {}",
            r.iter()
                .map(|(d, _)| d.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let amqp = match &p.broker_user {
        Some(u) => format!("AMQP door as broker user {u}"),
        None => "not on the AMQP door".into(),
    };
    let items: Vec<&str> = p.require_patient.iter().map(|i| i.describe()).collect();
    format!(
        "platform {} answers referrals delivered to {}; {references}; {amqp}; every event names {}",
        p.name,
        speaks.join(", "),
        if items.is_empty() {
            "no patient item (require_patient = [])".to_string()
        } else {
            items.join(" and ")
        }
    )
}

pub async fn check(config: &Config) -> ExitCode {
    let mut ok = true;
    let mut line = |good: bool, what: String| {
        println!("{} {what}", if good { "ok  " } else { "FAIL" });
        ok &= good;
    };
    match Wiring::build(config) {
        Ok(w) => {
            line(true, "configuration".into());
            line(
                true,
                format!(
                    "mappings in {} ({} mappings, {} code maps)",
                    w.mappings.dir.display(),
                    w.mappings.iter().count(),
                    w.mappings.codes.len()
                ),
            );
            if let (Some(r), Some(path)) = (&w.referrals.routes, &config.referrals.routes) {
                line(
                    true,
                    format!(
                        "routes in {} ({} destinations)",
                        path.display(),
                        r.destinations().len()
                    ),
                );
            }
            for (name, d) in &w.destinations {
                line(
                    true,
                    format!(
                        "destination {name} ({} for {}, mapping {})",
                        d.kind,
                        d.flow,
                        d.mapping_version()
                    ),
                );
                println!("       {}", sensitive_line(&d.sensitive_agreed()));
            }
            for p in w.message_back.iter().flat_map(|mb| mb.platforms.values()) {
                line(true, platform_line(p));
            }
            for warning in scottish_mesh_writers(&w) {
                println!("WARN {warning}");
            }
            // Failures were refused by the wiring plan above; what is left warns.
            for f in config.agreement_findings() {
                println!("WARN {} ({})", f.message, f.key);
            }
        }
        // The same report start-up gives for the same file.
        Err(e) => line(false, e.to_string().trim_end().to_string()),
    }
    match store(config).await {
        Ok(s) => {
            line(s.ping().await.is_ok(), format!("store {:?}", s.backend()));
            s.close().await;
        }
        Err(e) => line(false, format!("store: {}", e.reason())),
    }
    match config.transport().reachable().await {
        Some(Ok(())) => line(true, "broker".into()),
        Some(Err(e)) => line(false, format!("broker: {}", e.reason())),
        None => {}
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Prints the broker's exchanges and queues for every flow that is on, as RabbitMQ
/// definitions.
pub fn topology(config: &Config, vhost: &str) -> Result<()> {
    let transport = config.transport();
    let topologies: Vec<_> = config
        .flows_on()
        .into_iter()
        .filter_map(|f| transport.topology(f))
        .collect();
    if topologies.is_empty() {
        return Err(GatewayError::invalid(
            Stage::Config,
            "broker",
            "no [broker] configured, so there is no topology",
        ));
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&broker::Topology::definitions_of(&topologies, vhost))
            .unwrap_or_default()
    );
    Ok(())
}

/// A flow named on the command line.
fn flow_arg(flow: &str) -> Result<crate::model::Flow> {
    crate::model::Flow::parse(flow).ok_or_else(|| {
        GatewayError::invalid(Stage::Config, "--flow", "must be referral or message-back")
    })
}

pub async fn dlq_list(config: &Config, flow: &str) -> Result<()> {
    let flow = flow_arg(flow)?;
    let store = store(config).await?;
    // A broker that cannot be reached does not hide what the store already holds: the
    // list is printed, then the command fails saying it may be incomplete.
    let swept = config.transport().sweep(flow, &store).await;
    let listed = store
        .parked(Some(flow.as_str()), Some(crate::store::PARKED), i64::MAX)
        .await;
    store.close().await;
    let parked = listed?;
    if parked.is_empty() {
        println!("no parked messages");
    }
    for p in &parked {
        println!(
            "{}\t{}\t{}\tattempts={}\tparked_at={}\tmapping={}\tfield={}\tkey={}\t{}",
            p.message_id,
            p.stage,
            p.error_class,
            p.attempts,
            chrono::DateTime::from_timestamp_millis(p.parked_at)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default(),
            p.mapping.as_deref().unwrap_or("-"),
            p.field.as_deref().unwrap_or("-"),
            &p.key[..16],
            p.reason
        );
    }
    swept.map(|_| ()).map_err(|e| {
        GatewayError::transient(
            e.stage,
            format!(
                "the list above is what the store holds; messages still in the parking queue \
                 could not be brought in: {}",
                e.reason()
            ),
        )
    })
}

pub async fn dlq_replay(
    config: &Config,
    flow: &str,
    id: Option<&str>,
    all: bool,
    actor: &str,
) -> Result<()> {
    let flow = flow_arg(flow)?;
    let store = store(config).await?;
    let selection = match (id, all) {
        (Some(id), false) => parking::Selection::Id(id),
        _ => parking::Selection::All,
    };
    let replayed = config
        .transport()
        .replay(flow, &store, selection, actor)
        .await;
    store.close().await;
    let replayed = replayed?;
    for id in &replayed.ids {
        println!("replayed {id}");
    }
    for why in &replayed.not_replayable {
        println!("not replayed: {why}");
    }
    match (replayed.ids.is_empty(), replayed.not_replayable.is_empty()) {
        (true, true) => Err(GatewayError::invalid(
            Stage::Broker,
            "message_id",
            "no matching parked message",
        )),
        // Nothing could be sent: say so in the exit status too.
        (true, false) => Err(GatewayError::invalid(
            Stage::Store,
            "body",
            "no matching parked message could be replayed",
        )),
        _ => Ok(()),
    }
}

pub async fn dlq_dismiss(
    config: &Config,
    flow: &str,
    id: &str,
    reason: &str,
    actor: &str,
) -> Result<()> {
    let flow = flow_arg(flow)?;
    if reason.trim().is_empty() {
        return Err(GatewayError::invalid(Stage::Config, "--reason", "say why"));
    }
    let store = store(config).await?;
    let dismissed = async {
        config.transport().sweep(flow, &store).await?;
        let mut n = 0;
        for p in store
            .parked(Some(flow.as_str()), Some(crate::store::PARKED), i64::MAX)
            .await?
            .into_iter()
            .filter(|p| p.message_id == id)
        {
            n += usize::from(store.dismiss(&p.key, actor, reason).await?);
        }
        Ok::<_, GatewayError>(n)
    }
    .await;
    store.close().await;
    match dismissed? {
        0 => Err(GatewayError::invalid(
            Stage::Store,
            "message_id",
            "no matching parked message",
        )),
        n => {
            println!(
                "dismissed {n} parked cop{} of {id}",
                if n == 1 { "y" } else { "ies" }
            );
            Ok(())
        }
    }
}

pub async fn purge(config: &Config, dry: bool, actor: &str) -> Result<()> {
    let store = store(config).await?;
    let r = crate::app::retention::purge(config, &store, actor, dry).await;
    store.close().await;
    let purged = r?;
    for (kind, n) in &purged.0 {
        println!(
            "{kind:<13}{}{n}",
            if dry { "would remove " } else { "removed " }
        );
    }
    Ok(())
}

pub async fn resolve(
    config: &Config,
    flow: &str,
    id: &str,
    destination: &str,
    delivered: bool,
    actor: &str,
) -> Result<()> {
    if crate::model::Flow::parse(flow).is_none() {
        return Err(GatewayError::invalid(
            Stage::Config,
            "--flow",
            "must be referral or message-back",
        ));
    }
    let store = store(config).await?;
    let r = store.resolve(flow, id, destination, delivered, actor).await;
    store.close().await;
    r?;
    println!(
        "{id} → {destination}: recorded as {}; replay the parked message to finish it",
        if delivered {
            "delivered"
        } else {
            "free to send again"
        }
    );
    Ok(())
}

pub async fn status(config: &Config, id: Option<&str>, as_json: bool) -> Result<()> {
    let store = store(config).await?;
    let result = status_inner(&store, id, as_json).await;
    store.close().await;
    result
}

async fn status_inner(store: &Store, id: Option<&str>, as_json: bool) -> Result<()> {
    let Some(id) = id else {
        for flow in crate::flows::FLOWS.iter().map(|r| r.flow) {
            for (state, n) in store.count_by_state(flow.as_str()).await? {
                println!("{flow}\t{state}\t{n}");
            }
        }
        for (programme, state, n) in store.lifecycle_counts().await? {
            println!("referrals\t{programme}\t{state}\t{n}");
        }
        for k in store.inbox_kept(50).await? {
            println!(
                "inbox kept\t{}\t{}\t{}\t{}\t{}",
                k.destination,
                k.inbox_id,
                k.workflow.as_deref().unwrap_or("-"),
                ms(k.kept_at),
                k.reason
            );
        }
        return Ok(());
    };
    let messages = store.find_message(id).await?;
    if messages.is_empty() {
        return Err(GatewayError::invalid(
            Stage::Store,
            "message_id",
            "no message with that id in the store",
        ));
    }
    for m in messages {
        let deliveries = store.deliveries(&m.flow, &m.message_id).await?;
        let mut acks = Vec::new();
        for d in &deliveries {
            acks.push(
                store
                    .ack_state(&m.flow, &m.message_id, &d.destination)
                    .await?,
            );
        }
        let audit = store.audit(&m.flow, &m.message_id).await?;
        let timeline = match m.flow.as_str() {
            "referral" => crate::store::timeline::referral_timeline(store, &m.message_id).await?,
            _ => None,
        };
        if as_json {
            let v = json!({
                "referral": timeline,
                "flow": m.flow, "message_id": m.message_id, "state": m.state, "attempts": m.attempts,
                "source": m.source, "error_class": m.error_class, "error_stage": m.error_stage,
                "last_error": m.last_error, "received_at": ms(m.received_at), "updated_at": ms(m.updated_at),
                "deliveries": deliveries.iter().zip(&acks).map(|(d, ack)| json!({
                    "destination": d.destination, "state": d.state, "attempts": d.attempts,
                    "idempotency_key": d.idempotency_key, "response_status": d.response_status,
                    "last_error": d.last_error, "delivered_at": d.delivered_at.map(ms),
                    "acknowledgement": ack,
                })).collect::<Vec<_>>(),
                "audit": audit.iter().map(|a| json!({
                    "at": ms(a.at), "actor": a.entry.actor, "action": a.entry.action.as_str(),
                    "destination": a.entry.destination, "fields": a.entry.fields,
                    "agreement": a.entry.agreement, "detail": a.entry.detail,
                })).collect::<Vec<_>>(),
            });
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            continue;
        }
        println!("message   {} ({})", m.message_id, m.flow);
        println!("state     {}", m.state);
        println!("attempts  {}", m.attempts);
        println!("received  {}", ms(m.received_at));
        println!("updated   {}", ms(m.updated_at));
        if let Some(e) = &m.last_error {
            println!(
                "error     [{} at {}] {e}",
                m.error_class.as_deref().unwrap_or("?"),
                m.error_stage.as_deref().unwrap_or("?")
            );
        }
        for (d, ack) in deliveries.iter().zip(&acks) {
            println!(
                "delivery  {}: {} after {} attempt(s){}",
                d.destination,
                d.state,
                d.attempts,
                d.last_error
                    .as_ref()
                    .map(|e| format!(" — {e}"))
                    .unwrap_or_default()
            );
            if let Some(ack) = ack {
                println!("          acknowledgement: {ack}");
            }
        }
        if let Some(t) = &timeline {
            print_timeline(t);
        }
        for a in &audit {
            println!(
                "audit     {} {} by {}{}{}",
                ms(a.at),
                a.entry.action,
                a.entry.actor,
                a.entry
                    .destination
                    .as_ref()
                    .map(|d| format!(" → {d}"))
                    .unwrap_or_default(),
                a.entry
                    .detail
                    .as_ref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(())
}

fn print_timeline(t: &serde_json::Value) {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    println!(
        "referral  programme {}, practice {}, {} ({} contacts, {} scores, {} onward referrals)",
        s(&t["programme"]),
        s(&t["practice"]),
        s(&t["state"]),
        t["counts"]["contacts"],
        t["counts"]["scores"],
        t["counts"]["onward_referrals"]
    );
    println!("timeline  {} sent", s(&t["sent_at"]));
    if let Some(e) = t["ended"].as_object() {
        println!(
            "ended     {} {} by {}: {}",
            s(&e["at"]),
            s(&e["state"]),
            s(&e["by_message"]),
            s(&e["reason"])
        );
    }
    for v in t["versions"].as_array().into_iter().flatten() {
        let fields: Vec<String> = v["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .map(s)
            .collect();
        let sent: Vec<String> = v["sent"].as_array().into_iter().flatten().map(s).collect();
        println!(
            "version   {} {} {}{} [{}] → {}",
            s(&v["at"]),
            s(&v["change"]),
            s(&v["message_id"]),
            if fields.is_empty() {
                String::new()
            } else {
                format!(" (changed: {})", fields.join(", "))
            },
            s(&v["state"]),
            if sent.is_empty() {
                "nothing sent".into()
            } else {
                sent.join(", ")
            }
        );
    }
    for e in t["timeline"].as_array().into_iter().flatten() {
        let written = crate::store::timeline::written_to(e);
        println!(
            "timeline  {} {}{} [{}] → {}",
            s(&e["occurred_at"]),
            s(&e["kind"]),
            e["detail"]
                .as_str()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default(),
            s(&e["state"]),
            if written.is_empty() {
                "nothing written".into()
            } else {
                written.join(", ")
            }
        );
    }
}
