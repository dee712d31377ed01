-- Retention (docs/reference.md "Retention"): the indexes that make each pruning delete
-- a range scan, and the lease that lets one host at a time prune.

CREATE INDEX sessions_expires ON sessions (expires_at);
CREATE INDEX sessions_revoked ON sessions (revoked_at);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);
CREATE INDEX email_tokens_used ON email_tokens (used_at);
CREATE INDEX email_tokens_expires ON email_tokens (expires_at);

-- One row per periodic job. A host takes the job by compare-and-set on `leased_until`
-- (no other host runs it meanwhile) and, when done, sets `next_run_at`.
CREATE TABLE maintenance_leases (
    job           TEXT    PRIMARY KEY NOT NULL,
    holder        TEXT    NOT NULL,
    leased_until  INTEGER NOT NULL,
    next_run_at   INTEGER NOT NULL
);
INSERT INTO maintenance_leases (job, holder, leased_until, next_run_at) VALUES ('retention', '', 0, 0);
