-- The gateway's own keys, made once by whichever instance starts first and shared by
-- every instance on this store: the key that seals the origin of events the gateway's
-- doors queued (src/seal.rs), so a publisher on the broker cannot forge one.
CREATE TABLE gateway_keys (
    name       TEXT   NOT NULL PRIMARY KEY,
    key_hex    TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);

-- Signed requests already taken at the event door, shared by every instance: keyed on
-- what was verified (the platform, the signed timestamp and the MAC that matched), and
-- forgotten once the timestamp is outside the replay window.
CREATE TABLE replay_guard (
    platform   TEXT   NOT NULL,
    signed_at  BIGINT NOT NULL,
    mac        TEXT   NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (platform, signed_at, mac)
);

CREATE INDEX replay_guard_by_expiry ON replay_guard (expires_at);

-- Console sign-ins: the SHA-256 of each random session id (the cookie holds the id), the
-- operator, a digest of the secret they signed in with (a changed secret ends the
-- session), and until when it holds. Signing out deletes the row, on every instance.
CREATE TABLE console_sessions (
    id_sha256     TEXT   NOT NULL PRIMARY KEY,
    operator      TEXT   NOT NULL,
    secret_sha256 TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE INDEX console_sessions_by_expiry ON console_sessions (expires_at);
