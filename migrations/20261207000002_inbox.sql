-- What a destination's inbox (MESH's) held that the gateway did not understand, or that
-- named nothing it sent: kept whole for a person, then acknowledged to the inbox, so
-- nothing expires there unseen. A body may hold patient data: retention removes it with
-- the parked bodies (`bodies`), and the row with the message rows (`rows`).
CREATE TABLE inbox_kept (
    destination TEXT   NOT NULL,
    inbox_id    TEXT   NOT NULL,
    workflow    TEXT,
    reason      TEXT   NOT NULL,   -- why it was kept (names no patient value)
    headers     TEXT   NOT NULL,   -- JSON array of [name, value]
    body        TEXT,              -- base64; NULL once retention removed it
    body_bytes  BIGINT NOT NULL,
    kept_at     BIGINT NOT NULL,
    PRIMARY KEY (destination, inbox_id)
);

CREATE INDEX inbox_kept_by_at ON inbox_kept (kept_at);
