//! What guards access, shared by every instance on one store: the origin-seal key, the
//! memory of signed requests already used, and console sessions (kept by digest).

use sqlx::Row;

use super::{Store, now_ms};
use crate::error::{GatewayError, Result, Stage};

impl Store {
    /// The key that seals event origins (`crate::secret::seal`): made by the first instance to
    /// ask, then the same for every instance on this store.
    pub async fn seal_key(&self) -> Result<Vec<u8>> {
        self.gateway_key("origin-seal").await
    }

    /// The key the dataset's person references are made under (the dataset module): kept
    /// in the store, so references link across restarts and instances, and never leave it.
    pub async fn dataset_link_key(&self) -> Result<Vec<u8>> {
        self.gateway_key("dataset-link").await
    }

    /// One of the gateway's own keys, made by the first instance to ask.
    async fn gateway_key(&self, name: &str) -> Result<Vec<u8>> {
        sqlx::query(
            "INSERT INTO gateway_keys (name, key_hex, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(hex::encode(crate::secret::seal::new_key()))
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        let key: String = sqlx::query_scalar("SELECT key_hex FROM gateway_keys WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        hex::decode(key).map_err(|_| {
            GatewayError::permanent(Stage::Store, format!("the {name} key is not hex"))
        })
    }

    /// Records a verified signed request (platform, signed timestamp, the MAC that
    /// matched) until `expires_at` (ms); false when it was taken before — a replay, by
    /// this instance or any other on the store.
    pub async fn first_use(
        &self,
        platform: &str,
        signed_at: i64,
        mac: &[u8],
        expires_at: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO replay_guard (platform, signed_at, mac, expires_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (platform, signed_at, mac) DO NOTHING",
        )
        .bind(platform)
        .bind(signed_at)
        .bind(hex::encode(mac))
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Starts a console session: the SHA-256 of its id, for `operator`, until
    /// `expires_at` (ms).
    pub async fn session_start(
        &self,
        id_sha256: &str,
        operator: &str,
        secret_sha256: &str,
        expires_at: i64,
    ) -> Result<()> {
        sqlx::query("DELETE FROM console_sessions WHERE expires_at < $1")
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO console_sessions (id_sha256, operator, secret_sha256, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id_sha256)
        .bind(operator)
        .bind(secret_sha256)
        .bind(now_ms())
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The operator of a session that has not expired or ended, with the digest of the
    /// secret they signed in with.
    pub async fn session_operator(&self, id_sha256: &str) -> Result<Option<(String, String)>> {
        let row = sqlx::query(
            "SELECT operator, secret_sha256 FROM console_sessions \
             WHERE id_sha256 = $1 AND expires_at > $2",
        )
        .bind(id_sha256)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    /// Forgets the signed requests past their expiry. Only tidiness: a request that old
    /// is refused as stale before the replay memory is asked.
    pub async fn prune_replays(&self) -> Result<u64> {
        let done = sqlx::query("DELETE FROM replay_guard WHERE expires_at < $1")
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Forgets a signed request taken by [`Store::first_use`] (nothing came of it, so
    /// the same request may be sent again).
    pub async fn forget_use(&self, platform: &str, signed_at: i64, mac: &[u8]) -> Result<()> {
        sqlx::query("DELETE FROM replay_guard WHERE platform = $1 AND signed_at = $2 AND mac = $3")
            .bind(platform)
            .bind(signed_at)
            .bind(hex::encode(mac))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ends a session, for every instance.
    pub async fn session_end(&self, id_sha256: &str) -> Result<()> {
        sqlx::query("DELETE FROM console_sessions WHERE id_sha256 = $1")
            .bind(id_sha256)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
