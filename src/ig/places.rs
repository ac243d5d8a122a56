//! Where the gateway keeps each kind of data, and for how long: the `[retention]`
//! periods beside the place each applies to — the store (named by backend, host and
//! database, never with its credentials), the spool folders, destinations' folders.

use std::time::Duration;

use super::pack::Retention;
use crate::config::Config;
use crate::deliver::KeptFiles;

/// A period in words ([`crate::model::dates::period_in_words`]).
pub fn period(d: Duration) -> String {
    crate::model::dates::period_in_words(d)
}

/// The store, in words: "SQLite file PATH" or "PostgreSQL database NAME on HOST".
pub fn store(config: &Config) -> String {
    let raw = config.store_url();
    if let Some(path) = raw.strip_prefix("sqlite://") {
        return format!("SQLite file {}", path.split('?').next().unwrap_or_default());
    }
    match url::Url::parse(&raw) {
        Ok(u) => format!(
            "PostgreSQL database {} on {}{}",
            u.path().trim_start_matches('/'),
            u.host_str().unwrap_or("?"),
            u.port().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Err(_) => "the configured store".into(),
    }
}

/// The folders of destinations that keep files of `which` kind.
fn folders(config: &Config, which: KeptFiles) -> String {
    let dirs: Vec<String> = config
        .destinations
        .iter()
        .filter_map(|(name, d)| d.kept().filter(|k| k.files == which).map(|k| (name, k)))
        .map(|(name, k)| format!("{} ({name})", k.dir.display()))
        .collect();
    if dirs.is_empty() {
        "none configured".into()
    } else {
        dirs.join("; ")
    }
}

/// Every kind of data kept, its period and place.
pub fn retention(config: &Config) -> Vec<Retention> {
    let r = &config.retention;
    let store = store(config);
    let spool = config.spool_dir().display().to_string();
    let row = |key: &str, what: &str, d: Duration, place: String, identifiable: bool| Retention {
        key: format!("retention.{key}"),
        what: what.into(),
        period: period(d),
        seconds: d.as_secs(),
        place,
        identifiable,
    };
    let mut out = Vec::new();
    match &config.broker {
        None => out.push(row(
            "spool_done",
            "referrals and events as received, after processing (spool done/ folders)",
            r.spool_done,
            format!("{spool}/*/done"),
            true,
        )),
        Some(_) => out.push(Retention {
            key: "—".into(),
            what: "messages waiting in RabbitMQ queues (removed once processed; parked copies \
                   until replayed or dismissed)"
                .into(),
            period: "until processed".into(),
            seconds: 0,
            place: "the RabbitMQ broker's queues".into(),
            identifiable: true,
        }),
    }
    out.extend([
        row(
            "outboxes",
            "files written by file destinations and practice-folder documents",
            r.outboxes,
            folders(config, KeptFiles::Outbox),
            true,
        ),
        row(
            "sheets",
            "CSV spreadsheet files",
            r.sheets,
            folders(config, KeptFiles::Sheets),
            true,
        ),
        row(
            "bodies",
            "bodies of parked messages, kept so a person can replay them",
            r.bodies,
            match &config.broker {
                None => format!("{store}; {spool}/*/failed"),
                Some(_) => store.clone(),
            },
            true,
        ),
        row(
            "referrals",
            "the referrals sent, kept so platforms' events can be linked to them",
            r.referrals,
            store.clone(),
            true,
        ),
        row(
            "rows",
            "message, delivery and journal rows (ids, states, platform references)",
            r.rows,
            store.clone(),
            false,
        ),
        row(
            "audit",
            "the audit log: who did what to which message, field names never values",
            r.audit,
            store.clone(),
            false,
        ),
        row(
            "dataset",
            "the programme dataset's facts (no direct identifier; pseudonyms only in extracts)",
            r.dataset,
            store,
            false,
        ),
    ]);
    out
}
