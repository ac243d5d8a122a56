//! File destination: one JSON file per message, written atomically (temp file, fsync,
//! rename), named by message id so a repeat overwrites rather than duplicates.

use std::path::PathBuf;

use tokio::io::AsyncWriteExt;

use super::{Delivered, DeliveryRequest};
use crate::config::FileConfig;
use crate::error::{GatewayError, Result, Stage};

pub struct FileDestination {
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

impl FileDestination {
    pub fn new(name: &str, c: &FileConfig) -> Result<Self> {
        super::ensure_dir(name, &c.dir)?;
        Ok(FileDestination {
            name: name.to_string(),
            dir: c.dir.clone(),
        })
    }

    pub async fn deliver(&self, req: &DeliveryRequest<'_>) -> Result<Delivered> {
        let stem = safe_file_stem(req.message_id);
        let tmp = self.dir.join(format!(".{stem}.tmp"));
        let dest = self.dir.join(format!("{stem}.json"));
        let io = |e: std::io::Error| {
            GatewayError::transient(
                Stage::Deliver,
                format!("{}: cannot write file: {e}", self.name),
            )
        };
        let body = serde_json::to_vec_pretty(req.payload)
            .map_err(|e| GatewayError::permanent(Stage::Deliver, format!("{}: {e}", self.name)))?;
        let mut f = tokio::fs::File::create(&tmp).await.map_err(io)?;
        f.write_all(&body).await.map_err(io)?;
        f.sync_all().await.map_err(io)?;
        drop(f);
        tokio::fs::rename(&tmp, &dest).await.map_err(io)?;
        Ok(Delivered { status: None })
    }
}
