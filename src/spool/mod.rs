//! The embedded default source: watched folders, no broker.
//!
//! ```text
//! <spool>/referrals/inbox/       drop *.json here (write elsewhere, then rename in)
//!                  /processing/  claimed by an atomic rename; back to inbox on restart
//!                  /done/        settled (delivered, duplicate or withheld by policy)
//!                  /failed/      parked, with <name>.reason.json beside it
//! ```

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::engine::{Disposition, Inbound, Pipeline};
use crate::error::{GatewayError, Result, Stage};
use crate::intake::Headers;
use crate::intake::envelope::ATTEMPT_HEADER;
use crate::shutdown::Shutdown;

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

pub struct SpoolSource {
    pub dirs: SpoolDirs,
    pub poll_interval: Duration,
    pub concurrency: usize,
    pub max_bytes: usize,
    pub pipeline: Arc<Pipeline>,
}

fn wanted(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    !name.starts_with('.') && name.ends_with(".json") && path.is_file()
}

/// Moves `from` into `dir` under its own name, or with a numeric suffix if taken.
fn move_into(from: &Path, dir: &Path) -> std::io::Result<PathBuf> {
    let name = from
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("message.json");
    let mut to = dir.join(name);
    let mut n = 1;
    while to.exists() {
        to = dir.join(format!("{name}.{n}"));
        n += 1;
    }
    std::fs::rename(from, &to)?;
    Ok(to)
}

impl SpoolSource {
    pub async fn run(self, shutdown: Shutdown) -> Result<()> {
        self.dirs.create()?;
        // Files left in processing by a stop or crash go back to the inbox.
        for entry in std::fs::read_dir(&self.dirs.processing)
            .into_iter()
            .flatten()
            .flatten()
        {
            if wanted(&entry.path()) {
                let _ = move_into(&entry.path(), &self.dirs.inbox);
            }
        }
        info!(inbox = %self.dirs.inbox.display(), "watching spool folder");
        let me = Arc::new(self);
        let permits = Arc::new(Semaphore::new(me.concurrency));
        let mut tasks = JoinSet::new();
        let mut stop = shutdown.clone();
        loop {
            while tasks.try_join_next().is_some() {}
            let mut files: Vec<PathBuf> = std::fs::read_dir(&me.dirs.inbox)
                .map_err(|e| {
                    GatewayError::transient(Stage::Intake, format!("cannot read spool inbox: {e}"))
                })?
                .flatten()
                .map(|e| e.path())
                .filter(|p| wanted(p))
                .collect();
            files.sort();
            for file in files {
                let permit = tokio::select! {
                    p = permits.clone().acquire_owned() => p.map_err(|_| GatewayError::transient(Stage::Intake, "spool closed"))?,
                    _ = stop.wait() => break,
                };
                // The atomic rename is the claim: if it fails another instance took the file.
                let Ok(claimed) = move_into(&file, &me.dirs.processing) else {
                    continue;
                };
                let me = me.clone();
                let permits = permits.clone();
                let shutdown = shutdown.clone();
                tasks.spawn(async move { me.handle(claimed, permit, permits, shutdown).await });
            }
            if shutdown.is_triggered() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(me.poll_interval) => {},
                _ = stop.wait() => break,
            }
        }
        while tasks.join_next().await.is_some() {}
        Ok(())
    }

    async fn handle(
        &self,
        file: PathBuf,
        mut permit: tokio::sync::OwnedSemaphorePermit,
        permits: Arc<Semaphore>,
        mut shutdown: Shutdown,
    ) {
        let mut previous = 0u32;
        loop {
            let inbound = match self.read(&file, previous) {
                Ok(i) => i,
                Err(e) => {
                    warn!(file = %file.display(), error = %e, "cannot read spool file");
                    return;
                }
            };
            let d = self.pipeline.process(&inbound).await;
            drop(permit);
            match d {
                Disposition::Done { .. } => {
                    let _ = move_into(&file, &self.dirs.done);
                    return;
                }
                Disposition::Park {
                    message_id,
                    attempts,
                    error,
                    ..
                } => {
                    self.fail(&file, &message_id, attempts, &error);
                    return;
                }
                Disposition::Retry { tier, attempts, .. } => {
                    let delay = self.pipeline.retry_tiers()[tier];
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {},
                        // Left in processing: moved back to the inbox at next start.
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
        std::fs::File::open(file)?
            .take(self.max_bytes as u64 + 1)
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
        })
    }

    fn fail(&self, file: &Path, message_id: &str, attempts: u32, error: &GatewayError) {
        match move_into(file, &self.dirs.failed) {
            Ok(moved) => {
                let reason = json!({
                    "message_id": message_id,
                    "stage": error.stage.as_str(),
                    "error_class": error.class.as_str(),
                    "field": error.field,
                    "reason": error.reason(),
                    "attempts": attempts,
                    "failed_at": chrono::Utc::now().to_rfc3339(),
                });
                let mut reason_path = moved.into_os_string();
                reason_path.push(".reason.json");
                if let Err(e) = std::fs::write(
                    &reason_path,
                    serde_json::to_vec_pretty(&reason).unwrap_or_default(),
                ) {
                    warn!(error = %e, "cannot write reason file");
                }
            }
            Err(e) => warn!(file = %file.display(), error = %e, "cannot move failed file"),
        }
    }
}
