DROP TABLE audit_log;
DROP TABLE sharing_agreements;
DROP TABLE revoked_tokens;
DROP TABLE signing_keys;
DROP TABLE oauth_clients;
