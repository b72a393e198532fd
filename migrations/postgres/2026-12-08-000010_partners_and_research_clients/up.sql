-- Partner management (`passerelle partner retire`) and research clients, which belong to a
-- research organisation instead of a partner. Keep in step with migrations/sqlite.
ALTER TABLE partners ADD COLUMN retired_at TEXT;

ALTER TABLE oauth_clients ALTER COLUMN partner_id DROP NOT NULL;
-- The research organisation of a research client (a slug); NULL for a partner's client.
ALTER TABLE oauth_clients ADD COLUMN research_org TEXT;
ALTER TABLE oauth_clients ADD CONSTRAINT oauth_clients_one_owner
    CHECK ((partner_id IS NULL) <> (research_org IS NULL));
