-- The gateway's own keys, made once by whichever instance starts first and shared by
-- every instance on this store: the key that seals the origin of events the gateway's
-- doors queued (src/seal.rs), so a publisher on the broker cannot forge one.
CREATE TABLE gateway_keys (
    name       TEXT   NOT NULL PRIMARY KEY,
    key_hex    TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);
