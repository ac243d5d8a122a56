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

/// Every later message, as a file of its own: an update is the referral with its
/// `lifecycle` object, a notice the notice alone.
pub const LATER: &[crate::model::lifecycle::Change] = super::EVERY_LATER;

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

/// A message id (or practice code) as a file name of its own: confined to its folder
/// (no `/`, never `.` or `..` or hidden) and distinct for distinct ids — what is not a
/// letter, digit, `-`, `_` or an inner `.` is escaped as `%XX` per UTF-8 byte, so the
/// name reads back to the id; a very long one is cut and given a digest of the whole.
pub fn safe_file_stem(id: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(id.len());
    for (i, c) in id.chars().enumerate() {
        match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '-' | '_' => out.push(c),
            // Never first: no hidden file, no `.` or `..`.
            '.' if i > 0 => out.push(c),
            c => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "%{b:02X}");
                }
            }
        }
    }
    if out.is_empty() {
        // No escape is a lone `%`, so no other id names this file.
        return "%".into();
    }
    if out.len() > MAX_STEM {
        use sha2::{Digest, Sha256};
        let digest = hex::encode(Sha256::digest(id.as_bytes()));
        // Everything kept is ASCII, so any byte is a character boundary.
        out.truncate(MAX_STEM - 17);
        out.push('~');
        out.push_str(&digest[..16]);
    }
    out
}

/// Room for a prefix (a date) and a suffix within a file system's 255-byte name.
const MAX_STEM: usize = 160;

impl Sink for FileSink {
    fn send<'a>(&'a self, job: &'a Job<'a>) -> BoxFuture<'a, Result<Sent>> {
        Box::pin(async move {
            let body = serde_json::to_vec_pretty(&super::payload::with_lifecycle(job)).map_err(|e| {
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

#[cfg(test)]
mod tests {
    use super::safe_file_stem;

    /// Confined to its folder, and distinct ids never share a file: ids that differ only
    /// in `:` `/` `@` `+` `=` once overwrote each other's files.
    #[test]
    fn file_stems_stay_in_their_folder_and_never_collide() {
        let ids = [
            "links:evt-1",
            "links/evt-1",
            "links@evt-1",
            "links+evt-1",
            "links=evt-1",
            "links_evt-1",
            "links%3Aevt-1",
            "..",
            ".",
            "../../etc/passwd",
            ".hidden",
            "",
            "%",
            "é",
            "a.b",
            "GP5",
        ];
        let stems: Vec<String> = ids.iter().map(|i| safe_file_stem(i)).collect();
        let unique: std::collections::BTreeSet<&String> = stems.iter().collect();
        assert_eq!(unique.len(), ids.len(), "{stems:?}");
        for s in &stems {
            assert!(
                !s.contains('/') && !s.starts_with('.') && !s.is_empty(),
                "{s}"
            );
        }
        assert_eq!(safe_file_stem("GP5"), "GP5");
        assert_eq!(safe_file_stem("5b2e6f8a-1c2d"), "5b2e6f8a-1c2d");
        let long = "x".repeat(300);
        let longer = format!("{long}y");
        assert!(safe_file_stem(&long).len() <= 160);
        assert_ne!(safe_file_stem(&long), safe_file_stem(&longer));
    }
}
