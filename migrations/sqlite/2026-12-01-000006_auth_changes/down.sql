DROP TRIGGER sharing_agreements_deleted;
DROP TRIGGER sharing_agreements_updated;
DROP TRIGGER sharing_agreements_inserted;
DROP TRIGGER revoked_tokens_inserted;
DROP TRIGGER oauth_clients_deleted;
DROP TRIGGER oauth_clients_updated;
DROP TABLE auth_changes;
