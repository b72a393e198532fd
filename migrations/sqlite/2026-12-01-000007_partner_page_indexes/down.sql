CREATE INDEX actions_owner_idx ON actions(owner_partner_id);
DROP INDEX actions_owner_start_idx;
DROP INDEX actions_owner_title_idx;
