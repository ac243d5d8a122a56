//! File destination (the embedded default's outbox): one JSON file per message,
//! written atomically (temp file, fsync, rename), named by message id so a repeat
//! replaces rather than duplicates.

use std::path::{Path, PathBuf};

use futures_util::future::BoxFuture;

use super::terms::destination_config;
use super::{Build, Job, Sent, Sink};
use crate::error::{GatewayError, Result, Stage};
use crate::mapping::spec::OutputFormat;
use crate::model::Flow;

pub const FLOW: Flow = Flow::Referral;

destination_config! { @data
    /// `kind = "file"`
    pub struct Config {
        pub dir: PathBuf,
        /// A json mapping producing the file (default: the PRSB referral JSON).
        #[serde(default = "default_mapping")]
        pub mapping: String,
    }
}

fn default_mapping() -> String {
    "prsb-referral".into()
}

pub fn build(b: &mut Build<'_>, c: &Config) -> Option<Box<dyn Sink>> {
    b.mapping("mapping", "mapping", &c.mapping, OutputFormat::Json);
    b.dir("dir", &c.dir);
    Some(Box::new(FileSink {
        name: b.name.to_string(),
        dir: c.dir.clone(),
    }))
}

struct FileSink {
    name: String,
    dir: PathBuf,
}

/// Keeps a message id safe as a file name.
pub fn safe_file_stem(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Sink for FileSink {
    fn send<'a>(&'a self, job: &'a Job<'a>) -> BoxFuture<'a, Result<Sent>> {
        Box::pin(async move {
            let body = serde_json::to_vec_pretty(job.payload()).map_err(|e| {
                GatewayError::permanent(Stage::Deliver, format!("{}: {e}", self.name))
            })?;
            let name = format!("{}.json", safe_file_stem(job.message_id));
            write_private(&self.dir, &name, body).await.map_err(|e| {
                GatewayError::transient(
                    Stage::Deliver,
                    format!("{}: cannot write file: {e}", self.name),
                )
            })?;
            Ok(Sent { status: None })
        })
    }
}

/// Writes `dir/name` atomically (temp file, fsync, rename, folder fsync), readable and
/// writable by its owner only: the files hold patient data.
pub async fn write_private(dir: &Path, name: &str, bytes: Vec<u8>) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let dest = dir.join(name);
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &dest)?;
        std::fs::File::open(&dir)?.sync_all()
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}
