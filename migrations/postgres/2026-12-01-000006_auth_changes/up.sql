-- A counter moved by every write that can change an access token's session: a client revoked,
-- updated or removed, a token revoked, a sharing agreement granted, changed or ended. Replicas
-- read it a few times a second and keep checked sessions only while it stands still
-- (`src/auth/sessions.rs`). Triggers, so that a write from anywhere (another replica, the
-- CLI, psql) moves it in its own transaction.
CREATE TABLE auth_changes (
    id  SMALLINT PRIMARY KEY CHECK (id = 1),
    n   BIGINT NOT NULL
);
INSERT INTO auth_changes (id, n) VALUES (1, 0);

CREATE FUNCTION auth_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE auth_changes SET n = n + 1 WHERE id = 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER oauth_clients_auth_changed AFTER UPDATE OR DELETE ON oauth_clients
    FOR EACH STATEMENT EXECUTE FUNCTION auth_changed();
CREATE TRIGGER revoked_tokens_auth_changed AFTER INSERT ON revoked_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION auth_changed();
CREATE TRIGGER sharing_agreements_auth_changed AFTER INSERT OR UPDATE OR DELETE ON sharing_agreements
    FOR EACH STATEMENT EXECUTE FUNCTION auth_changed();
