-- Password-reset requests wait here until the mail worker resolves them (the component's
-- `claim-mail`): `POST /api/v1/auth/password/forgot` only inserts a row, so it does the
-- same work whether or not the address belongs to an account (API.md §11).
CREATE TABLE reset_requests (
    id            VARCHAR(64)  NOT NULL PRIMARY KEY,
    -- lower-cased, as validated; never looked up on the request path
    email         VARCHAR(254) NOT NULL,
    ip_address    VARCHAR(64),
    requested_at  BIGINT       NOT NULL,
    INDEX reset_requests_at (requested_at, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
