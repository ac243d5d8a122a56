-- Exactly once under concurrency and crashes: claims on each (flow, message id,
-- destination) effect, a journal of the steps of effects that carry no idempotency
-- key, and how much of each spreadsheet file is committed.

-- A claim: who is sending this effect now, and until when the claim holds. A claim
-- past its expiry may be taken over (its owner stopped or crashed).
ALTER TABLE deliveries ADD COLUMN claimed_by TEXT;
ALTER TABLE deliveries ADD COLUMN claim_expires_at BIGINT;

-- One row per step of a multi-step or keyless effect (Lamplight's profile and
-- referral, Charitylog's PUT, a spreadsheet row): started before the request, done
-- with what it produced (a record id, a file position). A step found started but not
-- done after a crash means its outcome is unknown: a person checks, nothing resends.
CREATE TABLE effects (
    flow        TEXT   NOT NULL,
    message_id  TEXT   NOT NULL,
    destination TEXT   NOT NULL,
    step        TEXT   NOT NULL,
    state       TEXT   NOT NULL,   -- started | done
    value       TEXT,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (flow, message_id, destination, step)
);

-- Spreadsheet files: bytes and rows known to be complete. Anything past
-- committed_bytes was written by a writer that stopped before recording it.
CREATE TABLE sheet_files (
    destination     TEXT   NOT NULL,
    file            TEXT   NOT NULL,
    committed_bytes BIGINT NOT NULL,
    rows_written    BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (destination, file)
);
