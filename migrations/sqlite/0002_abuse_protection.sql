-- Abuse protection shared by every host on the database.

-- Fixed-window request counters: one row per (client IP, window).
CREATE TABLE rate_counters (
    bucket      TEXT    PRIMARY KEY NOT NULL,
    count       INTEGER NOT NULL,
    window_end  INTEGER NOT NULL
);
CREATE INDEX rate_counters_window_end ON rate_counters (window_end);

-- Consecutive failed logins per account ("user:<id>") or, for logins that name no
-- account, per normalised login ("login:<text>"), so both are throttled alike.
CREATE TABLE login_failures (
    subject         TEXT    PRIMARY KEY NOT NULL,
    failures        INTEGER NOT NULL,
    last_failed_ms  INTEGER NOT NULL
);
