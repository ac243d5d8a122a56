//! The dataset extract at scale: fills a store with `CLW_BENCH_REFERRALS` referrals
//! (default 100,000) and eight events each (800,000), through the store's own writer,
//! then times the row-level extract of them all to a discarded CSV and reports rows/s and
//! the process's peak resident memory. SQLite always; PostgreSQL too when
//! `CLW_BENCH_PG` names a database (e.g. postgres://postgres@127.0.0.1/postgres).
//! `cargo bench --bench dataset`; figures in docs/benchmarks.md.

use std::time::Instant;

use clw_gateway::dataset::DatasetConfig;
use clw_gateway::dataset::extract::Period;
use clw_gateway::dataset::facts::{CodeFact, EventFacts, ReferralFacts};
use clw_gateway::dataset::output::{ExtractJob, Format};
use clw_gateway::secret::Secret;
use clw_gateway::store::{Store, Write};

fn referral(i: usize) -> (String, Write, Vec<Write>) {
    let id = format!("ref-{i:07}");
    let day = format!("2026-{:02}-{:02}", 1 + i % 12, 1 + i % 28);
    let facts = ReferralFacts {
        practice_code: Some(format!("P{:05}", i % 400)),
        practice_code_system: Some("ods".into()),
        nation: Some("england".into()),
        referred_on: day.clone(),
        age_band_5y: "55-59".into(),
        age_band: "55-64".into(),
        gender: Some(
            if i.is_multiple_of(2) {
                "female"
            } else {
                "male"
            }
            .into(),
        ),
        ethnic_category: Some("A".into()),
        deprivation_index: Some("imd".into()),
        deprivation_decile: Some((1 + i % 10) as u8),
        referral_source: Some("General practitioner".into()),
        reasons: vec![CodeFact {
            system: Some("http://snomed.info/sct".into()),
            code: "422650009".into(),
        }],
        consent: "full".into(),
    };
    let r = Write::DatasetReferral {
        message_id: id.clone(),
        programme: "bench".into(),
        referred_on: day.clone(),
        person_ref: Some(format!("{:064x}", i % 90_000)),
        facts: serde_json::to_string(&facts).unwrap(),
    };
    let kinds = [
        ("referral-accepted", None, None),
        ("contact", Some("face-to-face"), None),
        ("assessment", None, Some(19.0)),
        ("contact", Some("telephone"), None),
        ("contact", Some("video"), None),
        ("onward-referral", None, None),
        ("assessment", None, Some(25.0)),
        ("closed", None, None),
    ];
    let events = kinds
        .iter()
        .enumerate()
        .map(|(k, (kind, mode, score))| {
            let f = EventFacts {
                kind: kind.to_string(),
                on: day.clone(),
                contact_mode: mode.map(str::to_string),
                contact_minutes: mode.map(|_| 30),
                instrument: score.map(|_| "SWEMWBS".to_string()),
                score: *score,
                onward_category: (*kind == "onward-referral").then(|| "befriending".into()),
                onward_kind: (*kind == "onward-referral").then(|| "referral".into()),
                closure_reason: (*kind == "closed").then(|| "completed".into()),
                ..Default::default()
            };
            Write::DatasetEvent {
                event_message_id: format!("{id}-e{k}"),
                referral_id: id.clone(),
                facts: serde_json::to_string(&f).unwrap(),
            }
        })
        .collect();
    (id, r, events)
}

/// The process's peak resident memory (VmHWM), in MiB.
fn peak_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

async fn run(label: &str, url: &str, n: usize) {
    let store = Store::connect(url, 4, 256).await.expect("store");
    let started = Instant::now();
    let mut batch = Vec::new();
    for i in 0..n {
        let (_, r, events) = referral(i);
        batch.push(r);
        batch.extend(events);
        if batch.len() >= 4_500 {
            store
                .write(Write::Many(std::mem::take(&mut batch)))
                .await
                .unwrap();
        }
    }
    if !batch.is_empty() {
        store.write(Write::Many(batch)).await.unwrap();
    }
    let filled = started.elapsed();
    // SAFETY: a single-threaded bench sets it before any reader.
    unsafe {
        std::env::set_var(
            "CLW_BENCH_DATASET_KEY",
            "a-bench-pseudonym-key-of-32-bytes-at-least",
        )
    };
    let config = DatasetConfig {
        pseudonym_key: Some(Secret::from_env("CLW_BENCH_DATASET_KEY")),
        ..Default::default()
    };
    let job = ExtractJob {
        store: &store,
        config: &config,
        codes: Default::default(),
        actor: "bench",
    };
    let period = Period {
        programme: "bench".into(),
        from: "2026-01-01".into(),
        to: "2026-12-31".into(),
        practice: None,
    };
    let before = peak_mib();
    let started = Instant::now();
    let totals = job
        .write(&period, Format::Csv, &mut std::io::sink())
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(totals.referrals as usize, n);
    println!(
        "{label}: {n} referrals, {} events: filled in {:.1} s; extract {:.1} s = {:.0} rows/s; peak RSS {:.0} MiB (before the extract {:.0} MiB)",
        n * 8,
        filled.as_secs_f64(),
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        peak_mib(),
        before
    );
    store.close().await;
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("CLW_BENCH_REFERRALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/bench.db?mode=rwc", dir.path().display());
    run("sqlite", &url, n).await;
    if let Ok(pg) = std::env::var("CLW_BENCH_PG") {
        // A schema of its own, dropped after.
        let schema = format!("bench_dataset_{}", std::process::id());
        let admin = sqlx::PgPool::connect(&pg).await.expect("postgres");
        let admin = &admin;
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(admin)
            .await
            .unwrap();
        let sep = if pg.contains('?') { '&' } else { '?' };
        let url = format!("{pg}{sep}options=-c%20search_path%3D{schema}");
        run("postgresql", &url, n).await;
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(admin)
            .await
            .unwrap();
    }
}
