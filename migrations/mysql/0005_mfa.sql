-- Two-factor authentication (TOTP, recovery codes) and the `amr` of each session.

-- 1 once the user has confirmed a TOTP enrolment: a password alone opens no session.
ALTER TABLE users ADD COLUMN mfa_enabled BIGINT NOT NULL DEFAULT 0;

-- How the session's user proved who they are: the `amr` claim's values (RFC 8176),
-- separated by spaces ("pwd", or "pwd otp mfa" after a second factor).
ALTER TABLE sessions ADD COLUMN amr VARCHAR(32) NOT NULL DEFAULT 'pwd';

-- One TOTP secret per user: pending (confirmed_at NULL) until a first code confirms it.
-- The secret is stored sealed under a key derived from PORTCULLIS_JWT_SECRET.
-- last_step is the last accepted 30-second step: only later steps are accepted.
CREATE TABLE mfa_totp (
    user_id        VARCHAR(64)  NOT NULL PRIMARY KEY,
    sealed_secret  VARCHAR(128) NOT NULL,
    confirmed_at   BIGINT,
    last_step      BIGINT       NOT NULL DEFAULT 0,
    created_at     BIGINT       NOT NULL,
    CONSTRAINT mfa_totp_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Single-use recovery codes, stored only as SHA-256 hashes (hex).
CREATE TABLE mfa_recovery_codes (
    code_hash   CHAR(64)     NOT NULL PRIMARY KEY,
    user_id     VARCHAR(64)  NOT NULL,
    created_at  BIGINT       NOT NULL,
    INDEX mfa_recovery_codes_user (user_id),
    CONSTRAINT mfa_recovery_codes_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The second step of a login: the mfa_token (stored as its SHA-256, hex), for the
-- password it followed (a SHA-256 of that password hash), single-use, short-lived, and
-- spent after five wrong codes.
CREATE TABLE mfa_challenges (
    token_hash            CHAR(64)     NOT NULL PRIMARY KEY,
    user_id               VARCHAR(64)  NOT NULL,
    password_fingerprint  CHAR(64)     NOT NULL,
    created_at            BIGINT       NOT NULL,
    expires_at            BIGINT       NOT NULL,
    failures              BIGINT       NOT NULL DEFAULT 0,
    spent_at              BIGINT,
    INDEX mfa_challenges_user (user_id),
    INDEX mfa_challenges_expires (expires_at),
    CONSTRAINT mfa_challenges_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
