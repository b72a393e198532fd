-- Partner management (`passerelle partner retire`) and research clients, which belong to a
-- research organisation instead of a partner. Keep in step with migrations/postgres.
ALTER TABLE partners ADD COLUMN retired_at TEXT;

-- SQLite cannot drop a NOT NULL: the table is rebuilt, with its index and triggers.
CREATE TABLE oauth_clients_new (
    id           TEXT PRIMARY KEY NOT NULL,
    partner_id   TEXT REFERENCES partners(id),
    -- The research organisation of a research client (a slug); NULL for a partner's client.
    research_org TEXT,
    scopes       TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    revoked_at   TEXT,
    CHECK ((partner_id IS NULL) <> (research_org IS NULL))
);
INSERT INTO oauth_clients_new (id, partner_id, scopes, secret_hash, created_at, revoked_at)
    SELECT id, partner_id, scopes, secret_hash, created_at, revoked_at FROM oauth_clients;
DROP TABLE oauth_clients;
ALTER TABLE oauth_clients_new RENAME TO oauth_clients;
CREATE INDEX oauth_clients_partner_idx ON oauth_clients(partner_id);
CREATE TRIGGER oauth_clients_updated AFTER UPDATE ON oauth_clients
BEGIN UPDATE auth_changes SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER oauth_clients_deleted AFTER DELETE ON oauth_clients
BEGIN UPDATE auth_changes SET n = n + 1 WHERE id = 1; END;
