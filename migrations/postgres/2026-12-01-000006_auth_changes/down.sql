DROP TRIGGER sharing_agreements_auth_changed ON sharing_agreements;
DROP TRIGGER revoked_tokens_auth_changed ON revoked_tokens;
DROP TRIGGER oauth_clients_auth_changed ON oauth_clients;
DROP FUNCTION auth_changed();
DROP TABLE auth_changes;
