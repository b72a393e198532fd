DELETE FROM oauth_clients WHERE partner_id IS NULL;
ALTER TABLE oauth_clients DROP CONSTRAINT oauth_clients_one_owner;
ALTER TABLE oauth_clients DROP COLUMN research_org;
ALTER TABLE oauth_clients ALTER COLUMN partner_id SET NOT NULL;
ALTER TABLE partners DROP COLUMN retired_at;
