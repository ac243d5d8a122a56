//! The dataset's facts as the store keeps them (`dataset_referrals`, `dataset_events`):
//! read a page at a time in a fixed order, so an extract of any size streams in bounded
//! memory, and purged after `retention.dataset`.

use sqlx::Row;

use super::Store;
use crate::error::Result;

/// A referral's facts row.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetReferralRow {
    pub message_id: String,
    pub programme: String,
    /// YYYY-MM-DD.
    pub referred_on: String,
    pub person_ref: Option<String>,
    /// JSON (the dataset's ReferralFacts).
    pub facts: String,
}

/// An event's facts row.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetEventRow {
    pub event_message_id: String,
    pub referral_id: String,
    /// JSON (the dataset's EventFacts).
    pub facts: String,
}

/// Where a page of referrals ends: the next page starts after it.
pub type PageEnd = (String, String);

impl Store {
    /// Up to `limit` of a programme's referrals referred on days `from..=to` (YYYY-MM-DD),
    /// in (day, id) order, after `after`.
    pub async fn dataset_referrals(
        &self,
        programme: &str,
        from: &str,
        to: &str,
        after: Option<&PageEnd>,
        limit: i64,
    ) -> Result<Vec<DatasetReferralRow>> {
        let (day, id) = after
            .map(|(d, i)| (d.as_str(), i.as_str()))
            .unwrap_or(("", ""));
        let rows = sqlx::query(
            "SELECT message_id, programme, referred_on, person_ref, facts FROM dataset_referrals \
             WHERE programme = $1 AND referred_on >= $2 AND referred_on <= $3 \
             AND (referred_on, message_id) > ($4, $5) \
             ORDER BY referred_on, message_id LIMIT $6",
        )
        .bind(programme)
        .bind(from)
        .bind(to)
        .bind(day)
        .bind(id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DatasetReferralRow {
                    message_id: r.try_get(0)?,
                    programme: r.try_get(1)?,
                    referred_on: r.try_get(2)?,
                    person_ref: r.try_get(3)?,
                    facts: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// How these referrals ended, where the practice or the gateway ended them:
    /// (referral id, state, when in ms).
    pub async fn endings(&self, referral_ids: &[String]) -> Result<Vec<(String, String, i64)>> {
        let mut out = Vec::new();
        for chunk in referral_ids.chunks(500) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT referral_id, state, changed_at FROM referral_lifecycle \
                 WHERE referral_id IN ({})",
                marks.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            for r in q.fetch_all(&self.pool).await? {
                out.push((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?));
            }
        }
        Ok(out)
    }

    /// The event facts of these referrals (one query per 500: a page's worth).
    pub async fn dataset_events(&self, referral_ids: &[String]) -> Result<Vec<DatasetEventRow>> {
        let mut out = Vec::new();
        for chunk in referral_ids.chunks(500) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT event_message_id, referral_id, facts FROM dataset_events \
                 WHERE referral_id IN ({}) ORDER BY referral_id, event_message_id",
                marks.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            for r in q.fetch_all(&self.pool).await? {
                out.push(DatasetEventRow {
                    event_message_id: r.try_get(0)?,
                    referral_id: r.try_get(1)?,
                    facts: r.try_get(2)?,
                });
            }
        }
        Ok(out)
    }

    /// Removes dataset facts recorded before `before` (ms); how many referrals.
    pub async fn purge_dataset(&self, before: i64, dry: bool) -> Result<u64> {
        if dry {
            let n: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM dataset_referrals WHERE recorded_at < $1")
                    .bind(before)
                    .fetch_one(&self.pool)
                    .await?;
            return Ok(n as u64);
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM dataset_events WHERE referral_id IN \
             (SELECT message_id FROM dataset_referrals WHERE recorded_at < $1)",
        )
        .bind(before)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM dataset_events WHERE recorded_at < $1 AND referral_id NOT IN (SELECT message_id FROM dataset_referrals)")
            .bind(before)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM dataset_referrals WHERE recorded_at < $1")
            .bind(before)
            .execute(&mut *tx)
            .await?;
        // How a referral ended outlives its record for the dataset's sake; once neither
        // reports it, it goes too.
        sqlx::query(
            "DELETE FROM referral_lifecycle WHERE changed_at < $1 \
             AND referral_id NOT IN (SELECT message_id FROM dataset_referrals) \
             AND referral_id NOT IN (SELECT message_id FROM referrals)",
        )
        .bind(before)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}

impl Store {
    /// Every programme the dataset has referrals of.
    pub async fn dataset_programmes(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT programme FROM dataset_referrals ORDER BY programme",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}
