-- Two-factor authentication (TOTP, recovery codes) and the `amr` of each session.

-- 1 once the user has confirmed a TOTP enrolment: a password alone opens no session.
ALTER TABLE users ADD COLUMN mfa_enabled BIGINT NOT NULL DEFAULT 0;

-- How the session's user proved who they are: the `amr` claim's values (RFC 8176),
-- separated by spaces ("pwd", or "pwd otp mfa" after a second factor).
ALTER TABLE sessions ADD COLUMN amr TEXT NOT NULL DEFAULT 'pwd';

-- One TOTP secret per user: pending (confirmed_at NULL) until a first code confirms it.
-- The secret is stored sealed under a key derived from PORTCULLIS_JWT_SECRET.
-- last_step is the last accepted 30-second step: only later steps are accepted.
CREATE TABLE mfa_totp (
    user_id        TEXT    PRIMARY KEY NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    sealed_secret  TEXT    NOT NULL,
    confirmed_at   BIGINT,
    last_step      BIGINT NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL
);

-- Single-use recovery codes, stored only as SHA-256 hashes (hex).
CREATE TABLE mfa_recovery_codes (
    code_hash   TEXT    PRIMARY KEY NOT NULL,
    user_id     TEXT    NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL
);
CREATE INDEX mfa_recovery_codes_user ON mfa_recovery_codes (user_id);

-- The second step of a login: the mfa_token (stored as its SHA-256, hex), for the
-- password it followed (a SHA-256 of that password hash), single-use, short-lived, and
-- spent after five wrong codes.
CREATE TABLE mfa_challenges (
    token_hash            TEXT    PRIMARY KEY NOT NULL,
    user_id               TEXT    NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    password_fingerprint  TEXT    NOT NULL,
    created_at            BIGINT NOT NULL,
    expires_at            BIGINT NOT NULL,
    failures              BIGINT NOT NULL DEFAULT 0,
    spent_at              BIGINT
);
CREATE INDEX mfa_challenges_user ON mfa_challenges (user_id);
CREATE INDEX mfa_challenges_expires ON mfa_challenges (expires_at);
