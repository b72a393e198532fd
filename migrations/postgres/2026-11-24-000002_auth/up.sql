-- OAuth2 scoping: clients, signing keys, revoked tokens, data-sharing agreements, audit log.
-- Keep in step with the other backend's folder. Times are RFC 3339 UTC text; `expires_at`
-- and `issued_at` are Unix seconds for cheap comparisons.

CREATE TABLE oauth_clients (
    id           TEXT PRIMARY KEY NOT NULL,
    partner_id   TEXT NOT NULL REFERENCES partners(id),
    -- Space-separated scopes the client may ask for.
    scopes       TEXT NOT NULL,
    -- Argon2id PHC string; the secret itself is never stored.
    secret_hash  TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    revoked_at   TEXT
);
CREATE INDEX oauth_clients_partner_idx ON oauth_clients(partner_id);

-- Ed25519 keys signing access tokens. The newest unretired key signs; retired keys stay in the
-- JWKS until every token they signed has expired.
CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY NOT NULL,
    algorithm    TEXT NOT NULL,
    -- PKCS#8 document, base64.
    private_key  TEXT NOT NULL,
    -- Raw public key, base64url (the JWK `x`).
    public_key   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    retired_at   BIGINT
);

-- Access tokens revoked before their expiry (RFC 7009), kept until they expire.
CREATE TABLE revoked_tokens (
    jti          TEXT PRIMARY KEY NOT NULL,
    client_id    TEXT NOT NULL,
    expires_at   BIGINT NOT NULL
);

-- A grantor partner shares its `partners`-visible records with a grantee over a period
-- (ISO dates, inclusive; `ends_on` NULL = open-ended).
CREATE TABLE sharing_agreements (
    id                 TEXT PRIMARY KEY NOT NULL,
    grantor_partner_id TEXT NOT NULL REFERENCES partners(id),
    grantee_partner_id TEXT NOT NULL REFERENCES partners(id),
    starts_on          TEXT NOT NULL,
    ends_on            TEXT,
    created_at         TEXT NOT NULL,
    CHECK (grantor_partner_id <> grantee_partner_id)
);
CREATE INDEX sharing_agreements_grantee_idx ON sharing_agreements(grantee_partner_id);

-- Append-only: the application only inserts and selects.
CREATE TABLE audit_log (
    id          TEXT PRIMARY KEY NOT NULL,
    at          TEXT NOT NULL,
    client_id   TEXT,
    partner_id  TEXT,
    operation   TEXT NOT NULL,
    -- Comma-separated ids of the partners whose records the response carried.
    partners    TEXT NOT NULL,
    outcome     TEXT NOT NULL
);
CREATE INDEX audit_log_at_idx ON audit_log(at, id);
