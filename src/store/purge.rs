//! What retention removes from the store, each kind by its own period. Every
//! statement is bounded by time; `dry` counts without removing.

use sqlx::Row;

use super::Store;
use crate::error::Result;

/// Settled messages past their period, not waiting on a person (an unknown outcome).
const OLD_MESSAGES: &str = "state IN ('delivered', 'withheld', 'parked') AND updated_at < $1 \
     AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.flow = messages.flow \
     AND d.message_id = messages.message_id AND d.state = 'unknown')";

impl Store {
    async fn count(&self, table: &str, filter: &str, before: i64) -> Result<u64> {
        let n: i64 = sqlx::query(&format!("SELECT COUNT(*) FROM {table} WHERE {filter}"))
            .bind(before)
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        Ok(n.max(0) as u64)
    }

    /// Removes the bodies of parked messages and of kept inbox messages stored before
    /// `before` (ms); how many.
    pub async fn purge_bodies(&self, before: i64, dry: bool) -> Result<u64> {
        let mut n = 0;
        for (table, at) in [("parked", "parked_at"), ("inbox_kept", "kept_at")] {
            let filter = format!("body IS NOT NULL AND {at} < $1");
            n += if dry {
                self.count(table, &filter, before).await?
            } else {
                sqlx::query(&format!("UPDATE {table} SET body = NULL WHERE {filter}"))
                    .bind(before)
                    .execute(&self.pool)
                    .await?
                    .rows_affected()
            };
        }
        Ok(n)
    }

    /// Removes referral records (and their linked events) last touched before `before`.
    pub async fn purge_referrals(&self, before: i64, dry: bool) -> Result<u64> {
        let filter = "updated_at < $1";
        if dry {
            return self.count("referrals", filter, before).await;
        }
        let mut tx = self.pool.begin().await?;
        // Its events and versions go with it; how it ended (no patient data) stays as
        // long as the dataset's rows that report it (`purge_dataset`).
        for (table, column) in [
            ("referral_events", "referral_id"),
            ("referral_versions", "referral_id"),
        ] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE {column} IN (SELECT message_id FROM referrals WHERE {filter})"
            ))
            .bind(before)
            .execute(&mut *tx)
            .await?;
        }
        let done = sqlx::query(&format!("DELETE FROM referrals WHERE {filter}"))
            .bind(before)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// Removes settled messages' rows (message, deliveries, journal), parked records and
    /// kept inbox messages from before `before`; how many.
    pub async fn purge_rows(&self, before: i64, dry: bool) -> Result<u64> {
        let parked_filter = "parked_at < $1";
        let kept_filter = "kept_at < $1";
        if dry {
            return Ok(self.count("messages", OLD_MESSAGES, before).await?
                + self.count("parked", parked_filter, before).await?
                + self.count("inbox_kept", kept_filter, before).await?);
        }
        let mut tx = self.pool.begin().await?;
        for table in ["deliveries", "effects"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE EXISTS (SELECT 1 FROM messages WHERE messages.flow = {table}.flow \
                 AND messages.message_id = {table}.message_id AND {OLD_MESSAGES})"
            ))
            .bind(before)
            .execute(&mut *tx)
            .await?;
        }
        let messages = sqlx::query(&format!("DELETE FROM messages WHERE {OLD_MESSAGES}"))
            .bind(before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let parked = sqlx::query(&format!("DELETE FROM parked WHERE {parked_filter}"))
            .bind(before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let kept = sqlx::query(&format!("DELETE FROM inbox_kept WHERE {kept_filter}"))
            .bind(before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(messages + parked + kept)
    }

    /// Removes audit rows from before `before`.
    pub async fn purge_audit(&self, before: i64, dry: bool) -> Result<u64> {
        let filter = "at < $1";
        if dry {
            return self.count("audit_log", filter, before).await;
        }
        let done = sqlx::query(&format!("DELETE FROM audit_log WHERE {filter}"))
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Forgets an appended file retention removed.
    pub async fn forget_appended_file(&self, destination: &str, file: &str) -> Result<()> {
        sqlx::query("DELETE FROM sheet_files WHERE destination = $1 AND file = $2")
            .bind(destination)
            .bind(file)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
