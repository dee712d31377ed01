-- Portcullis schema, SQLite dialect. Times are Unix seconds (UTC); booleans are 0/1;
-- ids are opaque text (UUIDv7, so they sort by creation time).

CREATE TABLE users (
    id                 TEXT    PRIMARY KEY NOT NULL,
    username           TEXT    NOT NULL,
    -- lower-cased username: uniqueness is case-insensitive
    username_key       TEXT    NOT NULL UNIQUE,
    -- stored lower-cased
    email              TEXT    NOT NULL UNIQUE,
    -- as given, without spaces, dashes and parentheses
    mobile_number      TEXT,
    -- digits only: "+1 (415) 555-0100" and "14155550100" are one number
    mobile_key         TEXT    UNIQUE,
    password_hash      TEXT    NOT NULL,
    email_verified     INTEGER NOT NULL DEFAULT 0,
    is_active          INTEGER NOT NULL DEFAULT 1,
    is_admin           INTEGER NOT NULL DEFAULT 0,
    -- bumped by every change to the user's set of sessions; the first statement of such
    -- a change, so concurrent logins of one user take turns (row lock) on every database
    session_version    INTEGER NOT NULL DEFAULT 0,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);

CREATE TABLE sessions (
    id              TEXT    PRIMARY KEY NOT NULL,
    user_id         TEXT    NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    device_info     TEXT,
    ip_address      TEXT,
    created_at      INTEGER NOT NULL,
    last_active_at  INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    -- set once the session is revoked (logout, eviction, password change …)
    revoked_at      INTEGER,
    revoked_reason  TEXT
);
CREATE INDEX sessions_user ON sessions (user_id, created_at);

-- Refresh tokens are stored only as SHA-256 hashes (hex).
CREATE TABLE refresh_tokens (
    token_hash   TEXT    PRIMARY KEY NOT NULL,
    session_id   TEXT    NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    -- set when the token was exchanged for its successor
    spent_at     INTEGER
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

CREATE TABLE audit_events (
    id          TEXT    PRIMARY KEY NOT NULL,
    at          INTEGER NOT NULL,
    event       TEXT    NOT NULL,
    user_id     TEXT,
    ip_address  TEXT,
    -- a small JSON object; never a password, token or hash
    detail      TEXT    NOT NULL
);
CREATE INDEX audit_events_at ON audit_events (at, id);
CREATE INDEX audit_events_user ON audit_events (user_id, at);

-- Ed25519 signing keys (PORTCULLIS_JWT_ALGORITHM=EdDSA). The private seed is stored
-- encrypted under a key derived from PORTCULLIS_JWT_SECRET; the newest key without
-- retired_at signs, retired keys still verify until the tokens they signed expire.
CREATE TABLE signing_keys (
    kid            TEXT    PRIMARY KEY NOT NULL,
    algorithm      TEXT    NOT NULL,
    sealed_private TEXT    NOT NULL,
    public_key     TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    retired_at     INTEGER
);

-- Email-verification and password-reset tokens, stored only as SHA-256 hashes (hex).
CREATE TABLE email_tokens (
    token_hash  TEXT    PRIMARY KEY NOT NULL,
    user_id     TEXT    NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    -- verify_email or reset_password
    purpose     TEXT    NOT NULL,
    -- the address the token was mailed to: a verification is for that address only
    email       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
);
CREATE INDEX email_tokens_user ON email_tokens (user_id, purpose);

-- Mail waits here until a host delivers it. A host claims a mail for a lease, so that
-- several hosts on one database never send it twice; the bodies (which hold a link
-- with a token) are blanked once it is sent.
CREATE TABLE outbox (
    id               TEXT    PRIMARY KEY NOT NULL,
    recipient        TEXT    NOT NULL,
    -- verify_email or reset_password: mails per address and kind are throttled
    kind             TEXT    NOT NULL,
    subject          TEXT    NOT NULL,
    text_body        TEXT    NOT NULL,
    html_body        TEXT    NOT NULL,
    created_at       INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    claim            TEXT,
    claimed_until    INTEGER,
    sent_at          INTEGER,
    last_error       TEXT
);
CREATE INDEX outbox_due ON outbox (sent_at, next_attempt_at);
CREATE INDEX outbox_recipient ON outbox (recipient, kind, created_at);
