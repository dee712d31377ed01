-- Abuse protection shared by every host on the database.

-- Fixed-window request counters: one row per (client IP, window).
CREATE TABLE rate_counters (
    bucket      VARCHAR(128) NOT NULL PRIMARY KEY,
    count       BIGINT       NOT NULL,
    window_end  BIGINT       NOT NULL,
    INDEX rate_counters_window_end (window_end)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Consecutive failed logins per account ("user:<id>") or, for logins that name no
-- account, per normalised login ("login:<text>"), so both are throttled alike.
CREATE TABLE login_failures (
    subject         VARCHAR(300) NOT NULL PRIMARY KEY,
    failures        BIGINT       NOT NULL,
    last_failed_ms  BIGINT       NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
