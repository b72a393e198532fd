-- A counter moved by every write that can change an access token's session: a client revoked,
-- updated or removed, a token revoked, a sharing agreement granted, changed or ended. The
-- server reads it a few times a second and keeps checked sessions only while it stands still
-- (`src/auth/sessions.rs`). Triggers, so that a write from another process (the CLI, sqlite3)
-- moves it in its own transaction.
CREATE TABLE auth_changes (
    id  INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    n   BIGINT NOT NULL
);
INSERT INTO auth_changes (id, n) VALUES (1, 0);

CREATE TRIGGER oauth_clients_updated AFTER UPDATE ON oauth_clients
BEGIN UPDATE auth_changes SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER oauth_clients_deleted AFTER DELETE ON oauth_clients
BEGIN UPDATE auth_changes SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER revoked_tokens_inserted AFTER INSERT ON revoked_tokens
BEGIN UPDATE auth_changes SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER sharing_agreements_inserted AFTER INSERT ON sharing_agreements
BEGIN UPDATE auth_changes SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER sharing_agreements_updated AFTER UPDATE ON sharing_agreements
BEGIN UPDATE auth_changes SET n = n + 1 WHERE id = 1; END;
CREATE TRIGGER sharing_agreements_deleted AFTER DELETE ON sharing_agreements
BEGIN UPDATE auth_changes SET n = n + 1 WHERE id = 1; END;
