-- A referral's life (ARCHITECTURE.md "A referral's life"). Each message about a referral
-- is a version: the first (new), later ones from the practice tied by the ServiceRequest's
-- identifier (amend, cancel, withdraw, unchanged), and the gateway's own (remind, close).
-- Only field names and keyed digests are kept, never values.
CREATE TABLE referral_versions (
    message_id  TEXT   PRIMARY KEY,
    referral_id TEXT   NOT NULL,   -- the first message's id: the referrals row
    identity    TEXT,              -- organisation|system|value; NULL for the gateway's own
    change      TEXT   NOT NULL,   -- new | amend | cancel | withdraw | unchanged | remind | close
    fields      TEXT   NOT NULL,   -- JSON array of the canonical fields changed
    fingerprint TEXT   NOT NULL,   -- JSON object: field -> keyed digest of its value
    consent     TEXT,              -- what the version's consent shares (full, codes-only,
                                   -- declined); NULL for the gateway's own
    created_at  BIGINT NOT NULL
);

CREATE INDEX referral_versions_by_referral ON referral_versions (referral_id, created_at);
CREATE INDEX referral_versions_by_identity ON referral_versions (identity, created_at);
-- One referral per practice identifier, whichever instance takes its first message.
CREATE UNIQUE INDEX referral_versions_one_new ON referral_versions (identity) WHERE change = 'new';

-- How a referral ended, when the practice or the gateway ended it (no row: open). The
-- first end stands.
CREATE TABLE referral_lifecycle (
    referral_id TEXT   PRIMARY KEY,
    state       TEXT   NOT NULL,   -- cancelled | withdrawn | expired
    by_message  TEXT   NOT NULL,
    reason      TEXT   NOT NULL,
    changed_at  BIGINT NOT NULL
);
