//! CSV destination for programmes that run on Excel, Access or Google Sheets: one row
//! per referral, columns in mapping order plus a gateway reference, in a file per day or
//! per batch; UTF-8 with a BOM and CRLF so Excel opens it cleanly.
//!
//! Rows are appended, never rewritten. One writer at a time: a process lock, and an
//! exclusive lock on the file across instances sharing the folder. The store knows how
//! many bytes of each file are complete (`sheet_files`) and which row each message
//! made (the journal), committed together after the row is on disk: a second copy, a
//! retry or a day / batch rollover adds nothing twice, and bytes past the committed
//! length (a writer that stopped mid-row or before recording it) are cut off before
//! the next append, so no file is left torn.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write as _};
use std::path::PathBuf;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;

use super::terms::destination_config;
use super::{Build, Job, Sent, Sink, Step};
use crate::error::{GatewayError, Result, Stage};
use crate::mapping::spec::OutputFormat;
use crate::model::Flow;
use crate::store::{Store, Write};

pub const FLOW: Flow = Flow::Referral;

/// Every later message, as a row of its own: an update's row carries the new values, a
/// notice's only the reference and the action.
pub const LATER: &[crate::model::lifecycle::Change] = super::EVERY_LATER;

/// Its files hold patient data, kept for `retention.sheets`.
pub fn kept(c: &Config) -> Option<super::Kept<'_>> {
    Some(super::Kept {
        dir: &c.dir,
        files: super::KeptFiles::Sheets,
    })
}

/// Files on the gateway's own disk.
pub fn channel(c: &Config) -> super::channel::Channel {
    super::channel::Channel::folder(&c.dir)
}

destination_config! { @data
    /// `kind = "csv"`
    pub struct Config {
        pub dir: PathBuf,
        /// A mapping with `output.format: csv`.
        pub mapping: String,
        #[serde(default = "default_file_prefix")]
        pub file_prefix: String,
        #[serde(default = "default_file_per")]
        pub file_per: FilePer,
        #[serde(default = "default_batch_rows")]
        pub batch_rows: usize,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FilePer {
    /// `<prefix>-YYYY-MM-DD.csv` (UTC day).
    Day,
    /// A new `<prefix>-<timestamp>.csv` every `batch_rows` rows.
    Batch,
}

fn default_file_prefix() -> String {
    "referrals".into()
}
fn default_file_per() -> FilePer {
    FilePer::Day
}
fn default_batch_rows() -> usize {
    500
}

pub fn build(b: &mut Build<'_>, c: &Config) -> Option<Box<dyn Sink>> {
    b.mapping("mapping", "mapping", &c.mapping, OutputFormat::Csv);
    b.dir("dir", &c.dir);
    if c.batch_rows == 0 {
        b.problem("batch_rows", "must be at least 1");
    }
    if c.file_prefix.is_empty() || c.file_prefix.contains(['/', '\\', '.']) {
        b.problem("file_prefix", "must be a plain name (no dots or slashes)");
    }
    Some(Box::new(Sheet {
        name: b.name.to_string(),
        dir: c.dir.clone(),
        prefix: c.file_prefix.clone(),
        per: c.file_per,
        batch_rows: c.batch_rows.max(1) as i64,
        lock: Mutex::new(()),
    }))
}

struct Sheet {
    name: String,
    dir: PathBuf,
    prefix: String,
    per: FilePer,
    batch_rows: i64,
    /// One append at a time in this process (the file lock covers other processes).
    lock: Mutex<()>,
}

const BOM: &str = "\u{feff}";
/// The last column: lets a programme quote a referral back.
pub const REFERENCE_COLUMN: &str = "Gateway reference";
/// The last column: what the row is (a referral, or a later change to one: updated,
/// cancelled, consent-withdrawn, reminder, closed-not-responded).
pub const ACTION_COLUMN: &str = "Gateway action";
/// The journal's step: which file and offset a message's row went to.
const ROW: &str = "sheet-row";

impl Sink for Sheet {
    fn send<'a>(&'a self, job: &'a Job<'a>) -> BoxFuture<'a, Result<Sent>> {
        Box::pin(async move {
            let _one = self.lock.lock().await;
            // A row already made (by an earlier copy, before a rollover): nothing to add.
            if let Step::Done(_) = job.journal.step(ROW).await? {
                return Ok(Sent { status: None });
            }
            let mut header: Vec<String> = job.fields().iter().map(|(k, _)| k.clone()).collect();
            header.push(REFERENCE_COLUMN.into());
            header.push(ACTION_COLUMN.into());
            let mut row: Vec<String> = job.fields().iter().map(|(_, v)| cell_text(v)).collect();
            // Every row of a referral quotes the referral's own reference.
            row.push(job.referral_id().to_string());
            row.push(
                job.operation
                    .map(|o| o.change.event_name())
                    .unwrap_or("referral")
                    .to_string(),
            );
            let file = self.file_for_next_row(job.journal.store).await?;
            self.append(job, &file, &encode_row(&header)?, &encode_row(&row)?)
                .await?;
            Ok(Sent { status: None })
        })
    }
}

impl Sheet {
    /// Its files' progress in the store.
    fn appends<'a>(&'a self, store: &'a Store) -> super::Appends<'a> {
        super::Appends {
            store,
            destination: &self.name,
        }
    }

    /// Today's file, or the open batch while it has room.
    async fn file_for_next_row(&self, store: &Store) -> Result<String> {
        let now = chrono::Utc::now();
        Ok(match self.per {
            FilePer::Day => format!("{}-{}.csv", self.prefix, now.format("%Y-%m-%d")),
            FilePer::Batch => match self.appends(store).latest().await? {
                Some((file, rows)) if rows < self.batch_rows => file,
                _ => format!("{}-{}.csv", self.prefix, now.format("%Y%m%dT%H%M%S%.3fZ")),
            },
        })
    }

    /// Appends one row under the file lock and records its place in the store.
    async fn append(&self, job: &Job<'_>, file: &str, header: &[u8], row: &[u8]) -> Result<()> {
        let store = job.journal.store;
        let path = self.dir.join(file);
        let io = |what: &'static str| {
            let name = self.name.clone();
            move |e: std::io::Error| {
                GatewayError::transient(
                    Stage::Deliver,
                    format!("{name}: cannot {what} the CSV file: {e}"),
                )
            }
        };
        let f = blocking(move || {
            use std::os::unix::fs::OpenOptionsExt;
            // Patient data: owner-only.
            let f = File::options()
                .mode(0o600)
                .read(true)
                .append(false)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)?;
            // Across instances sharing the folder: one writer at a time.
            f.lock()?;
            Ok(Arc::new(f))
        })
        .await
        .map_err(io("open and lock"))?;
        // Another instance may have written this message's row while we waited.
        if let Step::Done(_) = job.journal.step(ROW).await? {
            return Ok(());
        }
        let len = blocking({
            let f = f.clone();
            move || Ok(f.metadata()?.len() as i64)
        })
        .await
        .map_err(io("read"))?;
        let (committed, rows) = match self.appends(store).file(file).await? {
            // The file was moved aside (or removed): begin it again.
            Some(_) if len == 0 => self.begin(&f, file, header, store).await?,
            Some((committed, _)) if len < committed => {
                return Err(GatewayError::permanent(
                    Stage::Deliver,
                    format!(
                        "{}: {file} is shorter than the gateway wrote: it was edited or cut in place; \
                         move it aside (copy sheets before editing them), then replay",
                        self.name
                    ),
                ));
            }
            Some(c) => c,
            // A file this store never recorded: one written before the store kept
            // sheets, taken as complete (its rows uncounted); or a new file, begun
            // with its header.
            None if len > 0 => (len, 0),
            None => self.begin(&f, file, header, store).await?,
        };
        // Past `committed`: a row whose writer stopped before recording it. Its message
        // is not recorded as delivered either, so its retry writes it again.
        self.write_at(&f, committed, row.to_vec())
            .await
            .map_err(io("write"))?;
        let place = format!("{file}@{committed}");
        let recorded = store
            .write(Write::Many(vec![
                self.appends(store)
                    .record(file, committed + row.len() as i64, rows + 1),
                job.journal.record(ROW, "done", Some(&place)),
            ]))
            .await;
        if let Err(e) = recorded {
            // Not recorded: take the row back now rather than leave it to the next writer.
            let _ = self.write_at(&f, committed, Vec::new()).await;
            return Err(e);
        }
        Ok(())
    }

    /// Starts a file with its BOM and header, and records that much as committed.
    async fn begin(
        &self,
        f: &Arc<File>,
        file: &str,
        header: &[u8],
        store: &Store,
    ) -> Result<(i64, i64)> {
        let mut first = BOM.as_bytes().to_vec();
        first.extend_from_slice(header);
        self.write_at(f, 0, first.clone()).await.map_err(|e| {
            GatewayError::transient(
                Stage::Deliver,
                format!("{}: cannot write the CSV file: {e}", self.name),
            )
        })?;
        let committed = first.len() as i64;
        store
            .write(self.appends(store).record(file, committed, 0))
            .await?;
        Ok((committed, 0))
    }

    /// Writes `bytes` at `offset`, cutting off whatever followed, and syncs it to disk.
    async fn write_at(&self, f: &Arc<File>, offset: i64, bytes: Vec<u8>) -> std::io::Result<()> {
        let f = f.clone();
        let dir = self.dir.clone();
        blocking(move || {
            let mut file: &File = &f;
            file.set_len(offset as u64)?;
            file.seek(SeekFrom::Start(offset as u64))?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            // A new file's name is durable only once its folder is.
            if offset == 0 {
                File::open(&dir)?.sync_all()?;
            }
            Ok(())
        })
        .await
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

fn cell_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// One CSV record: RFC 4180 quoting by the `csv` crate, CRLF. A cell starting with
/// `=`, `+`, `-`, `@`, tab or CR is prefixed with `'` so a spreadsheet shows it as text
/// instead of running it as a formula (CSV injection).
pub fn encode_row(cells: &[String]) -> Result<Vec<u8>> {
    let mut w = ::csv::WriterBuilder::new()
        .terminator(::csv::Terminator::CRLF)
        .quote_style(::csv::QuoteStyle::Necessary)
        .from_writer(Vec::new());
    let guarded = cells.iter().map(|c| {
        if c.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            format!("'{c}")
        } else {
            c.clone()
        }
    });
    w.write_record(guarded)
        .map_err(|e| GatewayError::permanent(Stage::Deliver, format!("CSV row: {e}")))?;
    w.into_inner()
        .map_err(|e| GatewayError::permanent(Stage::Deliver, format!("CSV row: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> String {
        String::from_utf8(
            encode_row(&cells.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn quoting_and_formula_guard() {
        assert_eq!(row(&["a", "b c"]), "a,b c\r\n");
        assert_eq!(
            row(&["x,y", "say \"hi\"", "two\nlines"]),
            "\"x,y\",\"say \"\"hi\"\"\",\"two\nlines\"\r\n"
        );
        assert_eq!(
            row(&["=HYPERLINK(\"x\")"]),
            "\"'=HYPERLINK(\"\"x\"\")\"\r\n"
        );
        assert_eq!(row(&["+44 113", "-1", "@a"]), "'+44 113,'-1,'@a\r\n");
        // One empty cell is quoted, so the record is not an empty line.
        assert_eq!(row(&[""]), "\"\"\r\n");
    }
}
