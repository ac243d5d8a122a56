-- Retention finds what is past its period by time, without reading whole tables.
CREATE INDEX messages_by_updated ON messages (updated_at);
CREATE INDEX audit_log_by_at ON audit_log (at);
CREATE INDEX parked_by_time ON parked (parked_at);
CREATE INDEX referrals_by_updated ON referrals (updated_at);
