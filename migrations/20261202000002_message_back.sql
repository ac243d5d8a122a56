-- The message back: what the gateway keeps of each referral it sent so that events
-- about it can be linked, checked (right patient) and written to the practice record,
-- and each event linked to it (from which the referral's state and counts are derived,
-- so an event seen twice or out of order changes nothing twice).

CREATE TABLE referrals (
    message_id  TEXT   NOT NULL PRIMARY KEY,  -- the referral's id in the referral flow
    programme   TEXT   NOT NULL,
    practice    TEXT,                         -- ODS / practice code
    patient_key TEXT,                         -- SHA-256 of "nhs:<n>" or "chi:<n>", for linking
    record      TEXT   NOT NULL,              -- JSON: patient, practice, referrer, consent (patient data)
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE INDEX referrals_by_patient ON referrals (programme, patient_key);

CREATE TABLE referral_events (
    event_message_id TEXT   NOT NULL PRIMARY KEY,  -- the event's id in the message-back flow
    referral_id      TEXT   NOT NULL,
    kind             TEXT   NOT NULL,              -- referral-accepted | ... | closed
    occurred_at      TEXT   NOT NULL,
    detail           TEXT,                         -- e.g. "SWEMWBS 21" (no patient identifiers)
    recorded_at      BIGINT NOT NULL
);

CREATE INDEX referral_events_by_referral ON referral_events (referral_id, occurred_at);

-- Where each poller got to (e.g. Task?_lastUpdated=gt<cursor>).
CREATE TABLE poll_cursors (
    source     TEXT   NOT NULL PRIMARY KEY,
    cursor     TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);
