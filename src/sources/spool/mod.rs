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

mod settings;

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

const LOCK_FILE: &str = ".lock";
const REASON_SUFFIX: &str = ".reason.json";
/// How often a running instance looks for stopped instances' claimed files.
const RECOVER_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct SpoolDirs {
    pub inbox: PathBuf,
    pub processing: PathBuf,
    pub done: PathBuf,
    pub failed: PathBuf,
}

impl SpoolDirs {
    pub fn for_flow(root: &Path, flow_folder: &str) -> SpoolDirs {
        let base = root.join(flow_folder);
        SpoolDirs {
            inbox: base.join("inbox"),
            processing: base.join("processing"),
            done: base.join("done"),
            failed: base.join("failed"),
        }
    }

    pub fn create(&self) -> Result<()> {
        for d in [&self.inbox, &self.processing, &self.done, &self.failed] {
            std::fs::create_dir_all(d).map_err(|e| {
                GatewayError::permanent(
                    Stage::Config,
                    format!("cannot create spool folder {}: {e}", d.display()),
                )
            })?;
        }
        Ok(())
    }
}

/// A message file: `*.json`, not hidden, not a reason file, and a regular file or a
/// symbolic link (which is claimed only to be parked: the spool never follows one).
fn wanted(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    !name.starts_with('.')
        && name.ends_with(".json")
        && !name.ends_with(REASON_SUFFIX)
        && std::fs::symlink_metadata(path)
            .is_ok_and(|m| m.file_type().is_file() || m.file_type().is_symlink())
}

/// Whether `path` is a symbolic link (not followed).
fn is_link(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// `name`, or `stem-N.json` for the first N not taken in `dir`.
fn candidates(name: &str) -> impl Iterator<Item = String> + '_ {
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) => (s, format!(".{e}")),
        None => (name, String::new()),
    };
    std::iter::once(name.to_string()).chain((1..).map(move |n| format!("{stem}-{n}{ext}")))
}

/// Moves `from` into a folder others also write to, never overwriting: a hard link
/// under the first free name, then the old name removed. Returns the new path.
fn move_into(from: &Path, dir: &Path) -> std::io::Result<PathBuf> {
    let name = from
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("message.json");
    for candidate in candidates(name).take(10_000) {
        let to = dir.join(&candidate);
        match std::fs::hard_link(from, &to) {
            Ok(()) => {
                std::fs::remove_file(from)?;
                return Ok(to);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free name"))
}

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

/// Claims an inbox file into this instance's own folder: `rename` is atomic, so of
/// several instances racing for one file exactly one gets it. The name is free in the
/// target folder because only this instance writes there.
fn claim(from: &Path, mine: &Path) -> std::io::Result<PathBuf> {
    let name = from
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("message.json");
    let to = candidates(name)
        .map(|c| mine.join(c))
        .find(|p| !p.exists())
        .unwrap_or_else(|| mine.join(name));
    // rename moves a symbolic link itself, never what it points at.
    std::fs::rename(from, &to)?;
    // Patient data: owner-only from here on (done/ and failed/ keep the mode), whatever
    // the writer's umask was. Never through a link: that would change its target.
    if !is_link(&to) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600));
    }
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

/// Creates this instance's processing folder and locks it for the process's life.
fn own_folder(mine: &Path) -> Result<File> {
    let fail = |e: std::io::Error| {
        GatewayError::permanent(
            Stage::Config,
            format!("cannot claim spool folder {}: {e}", mine.display()),
        )
    };
    std::fs::create_dir_all(mine).map_err(fail)?;
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(mine.join(LOCK_FILE))
        .map_err(fail)?;
    f.try_lock()
        .map_err(|e| fail(std::io::Error::other(e.to_string())))?;
    Ok(f)
}

/// A name safe as a folder name.
fn safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clashing_names_keep_their_suffix_and_nothing_is_overwritten() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        for (i, body) in ["one", "two", "three"].iter().enumerate() {
            let f = a.join("r1.json");
            std::fs::write(&f, body).unwrap();
            let to = move_into(&f, &b).unwrap();
            let want = ["r1.json", "r1-1.json", "r1-2.json"][i];
            assert_eq!(to.file_name().unwrap(), want);
            assert!(!f.exists());
        }
        assert_eq!(std::fs::read_to_string(b.join("r1.json")).unwrap(), "one");
        assert_eq!(
            std::fs::read_to_string(b.join("r1-2.json")).unwrap(),
            "three"
        );
        assert!(wanted(&b.join("r1-1.json")));
        std::fs::write(b.join("r1.json.reason.json"), "{}").unwrap();
        assert!(!wanted(&b.join("r1.json.reason.json")));
    }

    #[test]
    fn a_running_instances_folder_is_left_alone_and_a_stopped_ones_is_recovered() {
        let d = tempfile::tempdir().unwrap();
        let processing = d.path().join("processing");
        let (alive, dead) = (processing.join("gw-a"), processing.join("gw-b"));
        let held = own_folder(&alive).unwrap();
        drop(own_folder(&dead).unwrap());
        std::fs::write(alive.join("x.json"), "a").unwrap();
        std::fs::write(dead.join("x.json"), "b").unwrap();
        // A second instance cannot take a folder whose lock is held.
        assert!(own_folder(&alive).is_err());
        drop(held);
        assert!(own_folder(&alive).is_ok(), "free once its owner stopped");
    }
}
