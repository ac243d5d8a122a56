//! Retention: patient data is kept only as long as `[retention]` says, kind by kind —
//! processed spool files, outbox and practice-folder files, CSV sheets, parked bodies,
//! referral records, message rows — and audit rows longer than any of them. Applied
//! every `retention.every` by the running service and on demand by `clw-gateway purge`;
//! each kind removed is audited (how many, never whose) and counted.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use crate::config::Config;
use crate::deliver::{Kept, KeptFiles};
use crate::engine::AuditAction;
use crate::engine::metrics::{KindLabels, Metrics};
use crate::error::Result;
use crate::sources::shutdown::Shutdown;
use crate::store::{AuditEntry, Store, Write, now_ms};

/// What one purge removed (or, dry, would remove), per kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Purged(pub Vec<(&'static str, u64)>);

impl Purged {
    pub fn total(&self) -> u64 {
        self.0.iter().map(|(_, n)| n).sum()
    }
}

/// Files under `dir` (and one level of sub-folders: a practice folder's practices)
/// last modified before `before`. Hidden files (a write in progress, a lock) are left.
fn old_files(dir: &Path, before: SystemTime) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut walk = |d: &Path, deeper: &mut Vec<PathBuf>| {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let path = e.path();
            let hidden = e.file_name().to_string_lossy().starts_with('.');
            match e.metadata() {
                Ok(m) if m.is_dir() && !hidden => deeper.push(path),
                Ok(m) if m.is_file() && !hidden && m.modified().is_ok_and(|t| t < before) => {
                    out.push(path)
                }
                _ => {}
            }
        }
    };
    let mut subdirs = Vec::new();
    walk(dir, &mut subdirs);
    for d in subdirs {
        walk(&d, &mut Vec::new());
    }
    out
}

/// Removes (unless `dry`) the files; how many.
fn remove(files: &[PathBuf], dry: bool) -> u64 {
    if dry {
        return files.len() as u64;
    }
    let mut n = 0;
    for f in files {
        match std::fs::remove_file(f) {
            Ok(()) => n += 1,
            Err(e) => warn!(file = %f.display(), error = %e, "retention: cannot remove a file"),
        }
    }
    n
}

fn ago(period: Duration) -> SystemTime {
    SystemTime::now()
        .checked_sub(period)
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

fn ago_ms(period: Duration) -> i64 {
    now_ms().saturating_sub(period.as_millis().min(i64::MAX as u128) as i64)
}

/// Applies every period once. `actor` is audited (`retention` for the service, the
/// operator's name for the command).
pub async fn purge(config: &Config, store: &Store, actor: &str, dry: bool) -> Result<Purged> {
    let r = &config.retention;
    let mut out = Vec::new();

    let spool = config.spool_dir();
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for flow in crate::flows::FLOWS.iter().map(|r| r.spool_folder) {
        done.extend(old_files(&spool.join(flow).join("done"), ago(r.spool_done)));
        failed.extend(old_files(&spool.join(flow).join("failed"), ago(r.bodies)));
    }
    out.push(("spool_done", remove(&done, dry)));
    out.push(("spool_failed", remove(&failed, dry)));

    let (mut outbox_files, mut sheets) = (Vec::new(), 0);
    for (name, d) in config.destinations.iter() {
        match d.kept() {
            Some(Kept {
                dir,
                files: KeptFiles::Outbox,
            }) => outbox_files.extend(old_files(dir, ago(r.outboxes))),
            Some(Kept {
                dir,
                files: KeptFiles::Sheets,
            }) => {
                let old = old_files(dir, ago(r.sheets));
                sheets += remove(&old, dry);
                if !dry {
                    for f in &old {
                        if let Some(file) = f.file_name().and_then(|n| n.to_str()) {
                            crate::deliver::Appends {
                                store,
                                destination: name,
                            }
                            .forget(file)
                            .await?;
                        }
                    }
                }
            }
            None => {}
        }
    }
    out.push(("outboxes", remove(&outbox_files, dry)));
    out.push(("sheets", sheets));

    out.push(("bodies", store.purge_bodies(ago_ms(r.bodies), dry).await?));
    out.push((
        "referrals",
        store.purge_referrals(ago_ms(r.referrals), dry).await?,
    ));
    out.push(("rows", store.purge_rows(ago_ms(r.rows), dry).await?));
    out.push(("audit", store.purge_audit(ago_ms(r.audit), dry).await?));
    out.push((
        "dataset",
        store.purge_dataset(ago_ms(r.dataset), dry).await?,
    ));

    if !dry {
        let audit: Vec<Write> = out
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(kind, n)| {
                Write::Audit(AuditEntry {
                    actor: actor.to_string(),
                    action: AuditAction::Purged,
                    flow: "all".into(),
                    message_id: "-".into(),
                    destination: None,
                    fields: Vec::new(),
                    agreement: None,
                    detail: Some(format!(
                        "removed {n} {kind} past retention ({})",
                        period(r, kind)
                    )),
                })
            })
            .collect();
        if !audit.is_empty() {
            store.write(Write::Many(audit)).await?;
        }
    }
    Ok(Purged(out))
}

/// The configured period of a kind, as written in the configuration.
fn period(r: &crate::store::RetentionConfig, kind: &str) -> String {
    let d = match kind {
        "spool_done" => r.spool_done,
        "spool_failed" | "bodies" => r.bodies,
        "outboxes" => r.outboxes,
        "sheets" => r.sheets,
        "referrals" => r.referrals,
        "rows" => r.rows,
        "dataset" => r.dataset,
        _ => r.audit,
    };
    humantime::format_duration(d).to_string()
}

/// The running service's retention: a purge at start and every `retention.every`.
pub async fn run(config: Config, store: Store, metrics: Metrics, mut shutdown: Shutdown) {
    loop {
        match purge(&config, &store, "retention", false).await {
            Ok(p) => {
                for (kind, n) in &p.0 {
                    metrics
                        .purged
                        .get_or_create(&KindLabels {
                            kind: kind.to_string(),
                        })
                        .inc_by(*n);
                }
                if p.total() > 0 {
                    info!(removed = p.total(), "retention applied");
                }
            }
            Err(e) => {
                warn!(error = %e, "retention could not run; trying again at the next interval")
            }
        }
        if !shutdown.pause(config.retention.every).await {
            return;
        }
    }
}
