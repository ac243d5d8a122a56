//! CSV destination for programmes that run on Excel, Access or Google Sheets: one row
//! per referral, columns in mapping order plus a gateway reference, in a file per day or
//! per batch. Each append rewrites the file atomically (temp file, fsync, rename), so a
//! reader never sees half a row; UTF-8 with a BOM and CRLF so Excel opens it cleanly.

use std::path::{Path, PathBuf};

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use super::terms::destination_config;
use super::{Build, Job, Sent, Sink};
use crate::error::{GatewayError, Result, Stage};
use crate::mapping::spec::OutputFormat;
use crate::model::Flow;

pub const FLOW: Flow = Flow::Referral;

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
    Some(Box::new(CsvDestination {
        name: b.name.to_string(),
        dir: c.dir.clone(),
        prefix: c.file_prefix.clone(),
        per: c.file_per,
        batch_rows: c.batch_rows.max(1),
        batch: Mutex::new(None),
    }))
}

const BOM: &str = "\u{feff}";
/// The last column: lets a programme quote a referral back, and lets a redelivery be
/// recognised so it does not add a second row.
pub const REFERENCE_COLUMN: &str = "Gateway reference";

struct CsvDestination {
    name: String,
    dir: PathBuf,
    prefix: String,
    per: FilePer,
    batch_rows: usize,
    /// Serialises appends; holds the open batch (file name, rows in it).
    batch: Mutex<Option<(String, usize)>>,
}

impl Sink for CsvDestination {
    fn send<'a>(&'a self, job: &'a Job<'a>) -> BoxFuture<'a, Result<Sent>> {
        Box::pin(self.append(job.message_id, job.fields()))
    }
}

impl CsvDestination {
    async fn append(&self, message_id: &str, fields: &[(String, Value)]) -> Result<Sent> {
        let mut header: Vec<String> = fields.iter().map(|(k, _)| k.clone()).collect();
        header.push(REFERENCE_COLUMN.into());
        let mut row = fields.iter().map(|(_, v)| cell_text(v)).collect::<Vec<_>>();
        row.push(message_id.to_string());

        let mut batch = self.batch.lock().await;
        let file = match self.per {
            FilePer::Day => format!(
                "{}-{}.csv",
                self.prefix,
                chrono::Utc::now().format("%Y-%m-%d")
            ),
            FilePer::Batch => match batch.as_ref() {
                Some((f, n)) if *n < self.batch_rows => f.clone(),
                _ => format!(
                    "{}-{}.csv",
                    self.prefix,
                    chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
                ),
            },
        };
        let path = self.dir.join(&file);
        let existing = match tokio::fs::read_to_string(&path).await {
            Ok(s) => Some(s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(self.io(e)),
        };
        let rows_before = existing.as_deref().map(count_rows).unwrap_or(0);
        let encoded = encode_row(&[message_id.to_string()]);
        let reference = encoded.trim_end_matches("\r\n");
        let already = existing
            .as_deref()
            .is_some_and(|s| s.lines().any(|l| l.ends_with(&format!(",{reference}"))));
        if !already {
            let mut content = existing.unwrap_or_else(|| format!("{BOM}{}", encode_row(&header)));
            content.push_str(&encode_row(&row));
            self.write_atomically(&path, content.as_bytes()).await?;
        }
        if self.per == FilePer::Batch {
            *batch = Some((file, rows_before + usize::from(!already)));
        }
        Ok(Sent { status: None })
    }

    async fn write_atomically(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let mut f = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| self.io(e))?;
        f.write_all(bytes).await.map_err(|e| self.io(e))?;
        f.sync_all().await.map_err(|e| self.io(e))?;
        drop(f);
        tokio::fs::rename(&tmp, path)
            .await
            .map_err(|e| self.io(e))?;
        // The rename is durable only once the directory is.
        if let Ok(d) = tokio::fs::File::open(&self.dir).await {
            let _ = d.sync_all().await;
        }
        Ok(())
    }

    fn io(&self, e: std::io::Error) -> GatewayError {
        GatewayError::transient(
            Stage::Deliver,
            format!("{}: cannot write the CSV file: {e}", self.name),
        )
    }
}

fn cell_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Data rows in a file this destination wrote (header excluded).
fn count_rows(content: &str) -> usize {
    content.matches("\r\n").count().saturating_sub(1)
}

/// One CSV record, RFC 4180 quoting, CRLF. A cell starting with `=`, `+`, `-`, `@`,
/// tab or CR is prefixed with `'` so a spreadsheet shows it as text instead of running
/// it as a formula (CSV injection).
pub fn encode_row(cells: &[String]) -> String {
    let mut out = String::new();
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let guarded;
        let cell = if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            guarded = format!("'{cell}");
            &guarded
        } else {
            cell
        };
        if cell.contains([',', '"', '\r', '\n']) || cell.starts_with(' ') || cell.ends_with(' ') {
            out.push('"');
            out.push_str(&cell.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(cell);
        }
    }
    out.push_str("\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> String {
        encode_row(&cells.iter().map(|s| s.to_string()).collect::<Vec<_>>())
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
        assert_eq!(row(&[""]), "\r\n");
    }
}
