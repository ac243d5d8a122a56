-- Parked messages, kept by the store: what an operator needs to see and replay one
-- (reason, headers, body) without reading the parking queue, so listing can never
-- lose or reorder a message. The broker's parking queue is drained into this table.

CREATE TABLE parked (
    parked_key   TEXT   NOT NULL PRIMARY KEY,  -- SHA-256 of the parked copy (headers and body): one row per parking
    flow         TEXT   NOT NULL,
    message_id   TEXT   NOT NULL,
    stage        TEXT   NOT NULL,
    error_class  TEXT   NOT NULL,
    field        TEXT,
    reason       TEXT   NOT NULL,              -- names fields, never patient values
    attempts     BIGINT NOT NULL,
    mapping      TEXT,
    origin       TEXT   NOT NULL,              -- amqp | spool
    headers      TEXT   NOT NULL,              -- JSON object of the message's string headers
    content_type TEXT,
    body         TEXT,                         -- base64; NULL once retention removed it (patient data)
    body_bytes   BIGINT NOT NULL,
    state        TEXT   NOT NULL,              -- parked | replayed
    parked_at    BIGINT NOT NULL,
    replayed_at  BIGINT,
    replayed_by  TEXT
);

CREATE INDEX parked_by_state ON parked (flow, state, parked_at);
CREATE INDEX parked_by_message ON parked (flow, message_id);
