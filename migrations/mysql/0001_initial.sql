-- Portcullis schema, MySQL 8 / MariaDB 10.6+ dialect. Times are Unix seconds (UTC);
-- booleans are 0/1; ids are opaque text (UUIDv7, so they sort by creation time).
-- Binary collation: comparisons are exact, as on SQLite and PostgreSQL (the service
-- lower-cases what must compare case-insensitively).

CREATE TABLE users (
    id                 VARCHAR(64)  NOT NULL PRIMARY KEY,
    username           VARCHAR(50)  NOT NULL,
    username_key       VARCHAR(50)  NOT NULL,
    email              VARCHAR(254) NOT NULL,
    mobile_number      VARCHAR(16),
    mobile_key         VARCHAR(15),
    password_hash      VARCHAR(255) NOT NULL,
    email_verified     BIGINT       NOT NULL DEFAULT 0,
    is_active          BIGINT       NOT NULL DEFAULT 1,
    is_admin           BIGINT       NOT NULL DEFAULT 0,
    session_version    BIGINT       NOT NULL DEFAULT 0,
    created_at         BIGINT       NOT NULL,
    updated_at         BIGINT       NOT NULL,
    CONSTRAINT users_username_key UNIQUE (username_key),
    CONSTRAINT users_email_key UNIQUE (email),
    CONSTRAINT users_mobile_key UNIQUE (mobile_key)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE sessions (
    id              VARCHAR(64)  NOT NULL PRIMARY KEY,
    user_id         VARCHAR(64)  NOT NULL,
    device_info     TEXT,
    ip_address      VARCHAR(64),
    created_at      BIGINT       NOT NULL,
    last_active_at  BIGINT       NOT NULL,
    expires_at      BIGINT       NOT NULL,
    revoked_at      BIGINT,
    revoked_reason  VARCHAR(32),
    INDEX sessions_user (user_id, created_at),
    CONSTRAINT sessions_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE refresh_tokens (
    token_hash   CHAR(64)     NOT NULL PRIMARY KEY,
    session_id   VARCHAR(64)  NOT NULL,
    created_at   BIGINT       NOT NULL,
    expires_at   BIGINT       NOT NULL,
    spent_at     BIGINT,
    INDEX refresh_tokens_session (session_id),
    CONSTRAINT refresh_tokens_session_fk FOREIGN KEY (session_id) REFERENCES sessions (id)
        ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE audit_events (
    id          VARCHAR(64)  NOT NULL PRIMARY KEY,
    at          BIGINT       NOT NULL,
    event       VARCHAR(64)  NOT NULL,
    user_id     VARCHAR(64),
    ip_address  VARCHAR(64),
    detail      TEXT         NOT NULL,
    INDEX audit_events_at (at, id),
    INDEX audit_events_user (user_id, at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE signing_keys (
    kid            VARCHAR(64)  NOT NULL PRIMARY KEY,
    algorithm      VARCHAR(16)  NOT NULL,
    sealed_private VARCHAR(128) NOT NULL,
    public_key     VARCHAR(128) NOT NULL,
    created_at     BIGINT       NOT NULL,
    retired_at     BIGINT
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE email_tokens (
    token_hash  CHAR(64)     NOT NULL PRIMARY KEY,
    user_id     VARCHAR(64)  NOT NULL,
    purpose     VARCHAR(32)  NOT NULL,
    email       VARCHAR(254) NOT NULL,
    created_at  BIGINT       NOT NULL,
    expires_at  BIGINT       NOT NULL,
    used_at     BIGINT,
    INDEX email_tokens_user (user_id, purpose),
    CONSTRAINT email_tokens_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE outbox (
    id               VARCHAR(64)  NOT NULL PRIMARY KEY,
    recipient        VARCHAR(254) NOT NULL,
    kind             VARCHAR(32)  NOT NULL,
    subject          VARCHAR(255) NOT NULL,
    text_body        TEXT         NOT NULL,
    html_body        TEXT         NOT NULL,
    created_at       BIGINT       NOT NULL,
    attempts         BIGINT       NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT       NOT NULL,
    claim            VARCHAR(64),
    claimed_until    BIGINT,
    sent_at          BIGINT,
    last_error       TEXT,
    INDEX outbox_due (sent_at, next_attempt_at),
    INDEX outbox_recipient (recipient, kind, created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
