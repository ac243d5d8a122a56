-- One set of migrations for SQLite and PostgreSQL: portable types only
-- (TEXT, BIGINT; times are Unix epoch milliseconds).

CREATE TABLE messages (
    flow        TEXT   NOT NULL,
    message_id  TEXT   NOT NULL,
    state       TEXT   NOT NULL,   -- received | delivered | retrying | parked | withheld
    attempts    BIGINT NOT NULL DEFAULT 0,
    source      TEXT,              -- amqp:<queue> | spool:<file> | replay
    body_sha256 TEXT,
    error_class TEXT,
    error_stage TEXT,
    last_error  TEXT,
    received_at BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (flow, message_id)
);

CREATE INDEX messages_state ON messages (state, updated_at);

-- Idempotency: one row per (flow, message id, destination).
CREATE TABLE deliveries (
    flow            TEXT   NOT NULL,
    message_id      TEXT   NOT NULL,
    destination     TEXT   NOT NULL,
    state           TEXT   NOT NULL,   -- delivered | retrying | failed | withheld
    attempts        BIGINT NOT NULL DEFAULT 0,
    idempotency_key TEXT   NOT NULL,
    response_status BIGINT,
    last_error      TEXT,
    delivered_at    BIGINT,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (flow, message_id, destination)
);

-- Who did what, with which field names (never values), under which agreement.
CREATE TABLE audit_log (
    id          TEXT   NOT NULL PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor       TEXT   NOT NULL,
    action      TEXT   NOT NULL,   -- received | delivered | retry | parked | duplicate | replayed | withheld
    flow        TEXT   NOT NULL,
    message_id  TEXT   NOT NULL,
    destination TEXT,
    fields      TEXT,              -- comma-separated canonical field names sent
    agreement   TEXT,              -- data-sharing agreement id
    detail      TEXT
);

CREATE INDEX audit_log_message ON audit_log (flow, message_id, at);
