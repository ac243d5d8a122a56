//! The embedded default source: watched folders, no broker.
//!
//! ```text
//! <spool>/<flow>/inbox/              drop *.json here (write elsewhere, then rename in)
//!               /processing/<owner>/ this instance's claimed files (an atomic rename)
//!               /done/               settled (delivered, duplicate or withheld by policy)
//!               /failed/             parked, with <name>.reason.json beside each
//! ```
//!
//! Each running instance owns one `processing/<owner>/` folder and holds an exclusive
//! lock on its `.lock` file for as long as it runs. A second instance starting never
//! touches another's folder while that lock is held; a folder whose lock is free
//! belonged to an instance that stopped, and its files go back to the inbox, checked
//! at start and every so often while running, so nothing is stranded in processing.
//! Moves never overwrite: a clashing name gets `-1`, `-2`... before its `.json`.

mod folders;
mod settings;

pub use folders::SpoolDirs;
pub use settings::SpoolConfig;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::engine::{Disposition, Inbound, Pipeline, SourceStatus};
use crate::error::{GatewayError, Result, Stage};
use crate::intake::Headers;
use crate::intake::envelope::ATTEMPT_HEADER;
use crate::sources::shutdown::Shutdown;
use crate::store::ParkedRecord;
use folders::{claim, is_link, move_into, own_folder, safe, wanted};

const LOCK_FILE: &str = ".lock";
const REASON_SUFFIX: &str = ".reason.json";
/// How often a running instance looks for stopped instances' claimed files.
const RECOVER_EVERY: Duration = Duration::from_secs(30);

/// The parking time as a header: two parkings of the same file are two records.
fn parked_at(at: String) -> Headers {
    Headers::from([(crate::sources::broker::headers::PARKED_AT.to_string(), at)])
}

/// Records in the store every parked file in failed/ it does not have yet (a file
/// parked while the store was down); how many were new.
pub async fn sweep_failed(
    dirs: &SpoolDirs,
    flow: crate::model::Flow,
    store: &crate::store::Store,
    max_bytes: usize,
) -> Result<usize> {
    let mut new = 0;
    let entries = std::fs::read_dir(&dirs.failed).map_err(|e| {
        GatewayError::transient(
            Stage::Intake,
            format!("cannot read the spool's failed folder: {e}"),
        )
    })?;
    for path in entries.flatten().map(|e| e.path()).filter(|p| wanted(p)) {
        let mut reason_path = path.clone().into_os_string();
        reason_path.push(REASON_SUFFIX);
        let reason: serde_json::Value = std::fs::read(&reason_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let text = |k: &str| reason.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let mut body = Vec::new();
        if File::open(&path)
            .and_then(|f| f.take(max_bytes as u64 + 1).read_to_end(&mut body))
            .is_err()
        {
            continue;
        }
        let record = ParkedRecord {
            flow: flow.as_str().to_string(),
            message_id: text("message_id").unwrap_or_else(|| "(unknown)".into()),
            stage: text("stage").unwrap_or_else(|| "intake".into()),
            error_class: text("error_class").unwrap_or_else(|| "permanent".into()),
            field: text("field"),
            reason: text("reason").unwrap_or_else(|| "parked (no reason file)".into()),
            attempts: reason.get("attempts").and_then(|v| v.as_i64()).unwrap_or(0),
            mapping: None,
            origin: format!(
                "spool:{}",
                path.file_name().and_then(|n| n.to_str()).unwrap_or("")
            ),
            headers: parked_at(text("failed_at").unwrap_or_default()),
            content_type: None,
            body,
        };
        if store.park(&record).await? {
            new += 1;
        }
    }
    Ok(new)
}

/// Returns a parked file (from failed/) to the inbox for another try, and removes its
/// reason file.
pub fn requeue(parked: &Path, dirs: &SpoolDirs) -> std::io::Result<PathBuf> {
    let to = move_into(parked, &dirs.inbox)?;
    let mut reason = parked.as_os_str().to_owned();
    reason.push(REASON_SUFFIX);
    let _ = std::fs::remove_file(reason);
    Ok(to)
}

pub struct SpoolSource {
    pub dirs: SpoolDirs,
    /// Names this instance's processing folder.
    pub owner: String,
    pub poll_interval: Duration,
    pub concurrency: usize,
    pub max_bytes: usize,
    pub pipeline: Arc<Pipeline>,
    /// Down while the inbox cannot be read or its files cannot be taken (/readyz).
    pub status: Arc<SourceStatus>,
}

struct Running {
    source: SpoolSource,
    mine: PathBuf,
    /// Held while this instance runs; dropping it frees the folder for recovery.
    _lock: File,
}

impl SpoolSource {
    pub async fn run(self, shutdown: Shutdown) -> Result<()> {
        self.dirs.create()?;
        let mine = self.dirs.processing.join(safe(&self.owner));
        let lock = own_folder(&mine)?;
        let me = Arc::new(Running {
            source: self,
            mine,
            _lock: lock,
        });
        me.recover();
        info!(inbox = %me.source.dirs.inbox.display(), "watching spool folder");
        let permits = Arc::new(Semaphore::new(me.source.concurrency));
        let mut tasks = JoinSet::new();
        let mut stop = shutdown.clone();
        let mut last_recovery = Instant::now();
        loop {
            while tasks.try_join_next().is_some() {}
            if last_recovery.elapsed() >= RECOVER_EVERY {
                me.recover();
                last_recovery = Instant::now();
            }
            // An unreadable inbox (permissions, a lost mount) is reported and retried,
            // never the end of the source.
            let mut files: Vec<PathBuf> = match std::fs::read_dir(&me.source.dirs.inbox) {
                Ok(entries) => entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| wanted(p))
                    .collect(),
                Err(e) => {
                    me.down(&format!("cannot read the spool inbox: {e}"));
                    Vec::new()
                }
            };
            let mut healthy = true;
            files.sort();
            for file in files {
                let permit = tokio::select! {
                    p = permits.clone().acquire_owned() => p.map_err(|_| GatewayError::transient(Stage::Intake, "spool closed"))?,
                    _ = stop.wait() => break,
                };
                let claimed = match claim(&file, &me.mine) {
                    Ok(c) => c,
                    // Taken by another instance first: not ours.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        healthy = false;
                        me.down(&format!("cannot take a file from the spool inbox: {e}"));
                        continue;
                    }
                };
                let me = me.clone();
                let permits = permits.clone();
                let shutdown = shutdown.clone();
                tasks.spawn(async move { me.handle(claimed, permit, permits, shutdown).await });
            }
            if healthy && std::fs::read_dir(&me.source.dirs.inbox).is_ok() {
                me.source.status.set(true);
            }
            if shutdown.is_triggered() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(me.source.poll_interval) => {},
                _ = stop.wait() => break,
            }
        }
        while tasks.join_next().await.is_some() {}
        // Files waiting for a retry go back to the inbox: nothing stays in processing.
        me.release_all();
        me.source.status.set(false);
        Ok(())
    }
}

impl Running {
    /// Marks the source not ready, logging once per change.
    fn down(&self, why: &str) {
        if self.source.status.is_up() {
            warn!(folder = %self.source.dirs.inbox.display(), reason = why, "spool source not ready; retrying");
        }
        self.source.status.set(false);
    }

    /// Returns the claimed files of instances that stopped (their lock is free) to the
    /// inbox, and any file an older version left directly in processing/.
    fn recover(&self) {
        let Ok(entries) = std::fs::read_dir(&self.source.dirs.processing) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path == self.mine {
                continue;
            }
            if wanted(&path) {
                self.back_to_inbox(&path);
                continue;
            }
            if !path.is_dir() {
                continue;
            }
            let lock = match File::options().write(true).open(path.join(LOCK_FILE)) {
                Ok(f) => f,
                // No lock file: a folder made by hand, or half made; leave it.
                Err(_) => continue,
            };
            if lock.try_lock().is_err() {
                continue; // its instance is running
            }
            let mut moved = 0;
            for f in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                if wanted(&f.path()) {
                    self.back_to_inbox(&f.path());
                    moved += 1;
                }
            }
            drop(lock);
            let _ = std::fs::remove_file(path.join(LOCK_FILE));
            let _ = std::fs::remove_dir(&path);
            if moved > 0 {
                info!(folder = %path.display(), files = moved, "returned a stopped instance's files to the inbox");
            }
        }
    }

    fn back_to_inbox(&self, path: &Path) {
        if let Err(e) = move_into(path, &self.source.dirs.inbox) {
            warn!(file = %path.display(), error = %e, "cannot return a file to the inbox");
        }
    }

    /// At a graceful stop: this instance's unfinished files back to the inbox.
    fn release_all(&self) {
        for f in std::fs::read_dir(&self.mine)
            .into_iter()
            .flatten()
            .flatten()
        {
            if wanted(&f.path()) {
                self.back_to_inbox(&f.path());
            }
        }
    }

    async fn handle(
        &self,
        file: PathBuf,
        mut permit: tokio::sync::OwnedSemaphorePermit,
        permits: Arc<Semaphore>,
        mut shutdown: Shutdown,
    ) {
        let mut previous = 0u32;
        if is_link(&file) {
            let error = GatewayError::permanent(
                Stage::Intake,
                "a symbolic link: the spool takes regular files only and never follows a link",
            );
            self.fail(&file, "(link)", previous, &error).await;
            return;
        }
        loop {
            let inbound = match self.read(&file, previous) {
                Ok(i) => i,
                Err(e) => {
                    // Parked with the reason rather than left in processing unseen.
                    let error = GatewayError::permanent(
                        Stage::Intake,
                        format!("cannot read the spool file: {e}"),
                    );
                    self.fail(&file, "(unread)", previous, &error).await;
                    return;
                }
            };
            // A handler that panics (a bug meeting this input) parks its file with a
            // reason, as broker mode nacks it: never left in processing unseen.
            let processed = {
                use futures_util::FutureExt;
                std::panic::AssertUnwindSafe(self.source.pipeline.process(&inbound))
                    .catch_unwind()
                    .await
            };
            let Ok(d) = processed else {
                self.source.pipeline.metrics().handler_panics.inc();
                warn!(file = %file.display(), "a message handler panicked; its file is parked");
                let error = GatewayError::permanent(
                    Stage::Intake,
                    "the gateway failed on this message (a defect, reported in its log): parked \
                     for a person; replay it once the gateway is fixed",
                );
                drop(inbound);
                self.fail(&file, "(panicked)", previous + 1, &error).await;
                return;
            };
            drop(inbound);
            drop(permit);
            match d {
                Disposition::Done { .. } => {
                    if let Err(e) = move_into(&file, &self.source.dirs.done) {
                        warn!(file = %file.display(), error = %e, "cannot move a settled file to done");
                    }
                    return;
                }
                Disposition::Park {
                    message_id,
                    attempts,
                    error,
                    ..
                } => {
                    self.fail(&file, &message_id, attempts, &error).await;
                    return;
                }
                Disposition::Retry { tier, attempts, .. } => {
                    // Only the file's name waits, not its bytes.
                    let delay = self.source.pipeline.retry_tiers()[tier];
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {},
                        // Returned to the inbox by release_all.
                        _ = shutdown.wait() => return,
                    }
                    previous = attempts;
                    permit = match permits.clone().acquire_owned().await {
                        Ok(p) => p,
                        Err(_) => return,
                    };
                }
            }
        }
    }

    /// Reads at most one byte past the limit, so an oversized file is refused, not loaded.
    fn read(&self, file: &Path, previous: u32) -> std::io::Result<Inbound> {
        let mut body = Vec::new();
        File::open(file)?
            .take(self.source.max_bytes as u64 + 1)
            .read_to_end(&mut body)?;
        let mut headers = Headers::new();
        if previous > 0 {
            headers.insert(ATTEMPT_HEADER.into(), previous.to_string());
        }
        Ok(Inbound {
            headers,
            content_type: None,
            body,
            source: format!(
                "spool:{}",
                file.file_name().and_then(|n| n.to_str()).unwrap_or("")
            ),
            user_id: None,
        })
    }

    /// Parks a file: into failed/ with its reason beside it, and recorded in the store
    /// (where `dlq` and the console list and replay it).
    async fn fail(&self, file: &Path, message_id: &str, attempts: u32, error: &GatewayError) {
        let moved = match move_into(file, &self.source.dirs.failed) {
            Ok(moved) => moved,
            Err(e) => {
                warn!(file = %file.display(), error = %e, "cannot move failed file");
                return;
            }
        };
        let failed_at = chrono::Utc::now().to_rfc3339();
        let reason = json!({
            "message_id": message_id,
            "stage": error.stage.as_str(),
            "error_class": error.class.as_str(),
            "field": error.field,
            "reason": error.reason(),
            "attempts": attempts,
            "failed_at": failed_at,
        });
        let name = moved
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("message.json");
        if let Err(e) = crate::deliver::write_private(
            &self.source.dirs.failed,
            &format!("{name}{REASON_SUFFIX}"),
            serde_json::to_vec_pretty(&reason).unwrap_or_default(),
        )
        .await
        {
            warn!(error = %e, "cannot write reason file");
        }
        // A link is never followed, not even to keep a copy of what it points at.
        let mut body = Vec::new();
        if !is_link(&moved) {
            let _ = File::open(&moved).and_then(|f| {
                f.take(self.source.max_bytes as u64 + 1)
                    .read_to_end(&mut body)
            });
        }
        let record = ParkedRecord {
            flow: self.source.pipeline.flow().as_str().to_string(),
            message_id: message_id.to_string(),
            stage: error.stage.as_str().to_string(),
            error_class: error.class.as_str().to_string(),
            field: error.field.clone(),
            reason: error.reason(),
            attempts: i64::from(attempts),
            mapping: None,
            origin: format!(
                "spool:{}",
                moved.file_name().and_then(|n| n.to_str()).unwrap_or("")
            ),
            headers: parked_at(failed_at),
            content_type: None,
            body,
        };
        if let Err(e) = self.source.pipeline.store().park(&record).await {
            // The file and its reason stay in failed/; the next `dlq list` finds them.
            warn!(error = %e, "cannot record a parked file in the store");
        }
    }
}
