-- Password-reset requests wait here until the mail worker resolves them (the component's
-- `claim-mail`): `POST /api/v1/auth/password/forgot` only inserts a row, so it does the
-- same work whether or not the address belongs to an account (API.md §11).
CREATE TABLE reset_requests (
    id            TEXT   PRIMARY KEY NOT NULL,
    -- lower-cased, as validated; never looked up on the request path
    email         TEXT   NOT NULL,
    ip_address    TEXT,
    requested_at  BIGINT NOT NULL
);
CREATE INDEX reset_requests_at ON reset_requests (requested_at, id);
