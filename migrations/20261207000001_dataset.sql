-- The programme dataset's facts: what the extract and report need of each referral and
-- each event, as typed facts recorded when the referral is taken and each event planned —
-- never parsed back from display text. No direct identifier: the person is a keyed
-- reference (HMAC under the store's dataset-link key), the practice a code, dates kept to
-- the day (shown only as months and day counts). Kept for `retention.dataset`, longer
-- than patient data.

CREATE TABLE dataset_referrals (
    message_id  TEXT   NOT NULL PRIMARY KEY,  -- the referral's id in the referral flow
    programme   TEXT   NOT NULL,
    referred_on TEXT   NOT NULL,              -- YYYY-MM-DD: the referral's date, else the day taken
    person_ref  TEXT,                         -- keyed person reference, never a number
    facts       TEXT   NOT NULL,              -- JSON: src/dataset/facts.rs ReferralFacts
    recorded_at BIGINT NOT NULL
);

-- An extract reads a programme's referrals a page at a time in (day, id) order.
CREATE INDEX dataset_referrals_by_programme ON dataset_referrals (programme, referred_on, message_id);
CREATE INDEX dataset_referrals_by_recorded ON dataset_referrals (recorded_at);

CREATE TABLE dataset_events (
    event_message_id TEXT   NOT NULL PRIMARY KEY,
    referral_id      TEXT   NOT NULL,
    facts            TEXT   NOT NULL,         -- JSON: src/dataset/facts.rs EventFacts
    recorded_at      BIGINT NOT NULL
);

CREATE INDEX dataset_events_by_referral ON dataset_events (referral_id);
CREATE INDEX dataset_events_by_recorded ON dataset_events (recorded_at);
