DELETE FROM oauth_clients WHERE partner_id IS NULL;
CREATE TABLE oauth_clients_old (
    id           TEXT PRIMARY KEY NOT NULL,
    partner_id   TEXT NOT NULL REFERENCES partners(id),
    scopes       TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    revoked_at   TEXT
);
INSERT INTO oauth_clients_old (id, partner_id, scopes, secret_hash, created_at, revoked_at)
    SELECT id, partner_id, scopes, secret_hash, created_at, revoked_at FROM oauth_clients;
DROP TABLE oauth_clients;
ALTER TABLE oauth_clients_old RENAME TO oauth_clients;
CREATE INDEX oauth_clients_partner_idx ON oauth_clients(partner_id);
CREATE TRIGGER oauth_clients_updated AFTER UPDATE ON oauth_clients
BEGIN UPDATE auth_changes SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER oauth_clients_deleted AFTER DELETE ON oauth_clients
BEGIN UPDATE auth_changes SET n = n + 1 WHERE id = 1; END;
ALTER TABLE partners DROP COLUMN retired_at;
