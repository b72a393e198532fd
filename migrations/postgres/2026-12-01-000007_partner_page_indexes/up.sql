-- A dashboard pages through one partner's actions, by title or by start. With an index on the
-- ordering alone, the database walked it and skipped every other partner's rows: about 10 rows
-- read for each one returned with 10 partners, 100 with 100. These read exactly the page.
-- They also serve lookups by owner alone, so the owner-only index goes.
CREATE INDEX actions_owner_title_idx ON actions(owner_partner_id, title, id);
CREATE INDEX actions_owner_start_idx ON actions(owner_partner_id, sort_start, id);
DROP INDEX actions_owner_idx;
