//! File destination (the embedded default's outbox): one JSON file per message,
//! written atomically (temp file, fsync, rename), named by message id so a repeat
//! replaces rather than duplicates.

use std::path::PathBuf;

use futures_util::future::BoxFuture;
use tokio::io::AsyncWriteExt;

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
            let stem = safe_file_stem(job.message_id);
            let tmp = self.dir.join(format!(".{stem}.tmp"));
            let dest = self.dir.join(format!("{stem}.json"));
            let io = |e: std::io::Error| {
                GatewayError::transient(
                    Stage::Deliver,
                    format!("{}: cannot write file: {e}", self.name),
                )
            };
            let body = serde_json::to_vec_pretty(job.payload()).map_err(|e| {
                GatewayError::permanent(Stage::Deliver, format!("{}: {e}", self.name))
            })?;
            let mut f = tokio::fs::File::create(&tmp).await.map_err(io)?;
            f.write_all(&body).await.map_err(io)?;
            f.sync_all().await.map_err(io)?;
            drop(f);
            tokio::fs::rename(&tmp, &dest).await.map_err(io)?;
            Ok(Sent { status: None })
        })
    }
}
