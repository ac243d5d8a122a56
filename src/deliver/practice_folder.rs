//! The practice folder (the embedded default's record writer): each event as a
//! document for manual filing — `<practice>/<date>-<event>.txt`, the readable summary
//! with the codes to enter, and `.json` beside it, the same entry for software to read.
//! Written atomically and named by event, so a repeat replaces rather than duplicates;
//! owner-only (0600), as they hold patient data.

use std::path::{Path, PathBuf};

use futures_util::future::BoxFuture;

use super::file::{safe_file_stem, write_private};
use super::terms::destination_config;
use super::{Build, Job, Sent, Sink};
use crate::error::{GatewayError, Result, Stage};
use crate::mapping::spec::OutputFormat;
use crate::model::Flow;
use crate::record::{RecordEntry, document};

pub const FLOW: Flow = Flow::MessageBack;

/// A record writer: it writes events, never a referral's later messages.
pub const LATER: &[crate::model::lifecycle::Change] = &[];

/// Its files hold patient data, kept for `retention.outboxes`.
pub fn kept(c: &Config) -> Option<super::Kept<'_>> {
    Some(super::Kept {
        dir: &c.dir,
        files: super::KeptFiles::Outbox,
    })
}

/// Files on the gateway's own disk.
pub fn channel(c: &Config) -> super::channel::Channel {
    super::channel::Channel::folder(&c.dir)
}

destination_config! { @data
    /// `kind = "practice-folder"`
    pub struct Config {
        pub dir: PathBuf,
        /// A json mapping producing the record entry (default: gp-record).
        #[serde(default = "default_mapping")]
        pub mapping: String,
        /// Read v2 codes beside SNOMED CT. Unset, the practice's nation decides: on for
        /// Scottish practices (their systems still code in Read v2), off elsewhere.
        #[serde(default)]
        pub read_codes: Option<bool>,
    }
}

fn default_mapping() -> String {
    "gp-record".into()
}

pub fn build(b: &mut Build<'_>, c: &Config) -> Option<Box<dyn Sink>> {
    b.mapping("mapping", "mapping", &c.mapping, OutputFormat::Json);
    b.dir("dir", &c.dir);
    Some(Box::new(PracticeFolder {
        name: b.name.to_string(),
        dir: c.dir.clone(),
        read_codes: c.read_codes,
    }))
}

struct PracticeFolder {
    name: String,
    dir: PathBuf,
    read_codes: Option<bool>,
}

impl Sink for PracticeFolder {
    fn send<'a>(&'a self, job: &'a Job<'a>) -> BoxFuture<'a, Result<Sent>> {
        Box::pin(async move {
            let entry = RecordEntry::from_payload(job.payload())?;
            let practice = safe_file_stem(entry.practice.code().unwrap_or("unknown-practice"));
            let folder = self.dir.join(practice);
            let day = entry.event.occurred_at.get(..10).unwrap_or("undated");
            let stem = format!("{day}-{}", safe_file_stem(job.message_id));
            let io = |e: std::io::Error| {
                GatewayError::transient(
                    Stage::Deliver,
                    format!("{}: cannot write the practice folder: {e}", self.name),
                )
            };
            let text = document::text(
                &entry,
                self.read_codes.unwrap_or(entry.practice.is_scottish()),
            );
            let json = serde_json::to_vec_pretty(job.payload()).map_err(|e| {
                GatewayError::permanent(Stage::Deliver, format!("{}: {e}", self.name))
            })?;
            write_in(&folder, &format!("{stem}.json"), json)
                .await
                .map_err(io)?;
            write_in(&folder, &format!("{stem}.txt"), text.into_bytes())
                .await
                .map_err(io)?;
            Ok(Sent { status: None })
        })
    }
}

async fn write_in(folder: &Path, name: &str, bytes: Vec<u8>) -> std::io::Result<()> {
    tokio::fs::create_dir_all(folder).await?;
    write_private(folder, name, bytes).await
}
