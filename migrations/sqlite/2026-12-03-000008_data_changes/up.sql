-- Tells the serving process which kinds of record a committed write touched, so that it drops the
-- cached answers holding them (`src/storage/changes.rs`, `src/http/cache.rs`): one counter per
-- kind, moved by triggers in the write's own transaction, whoever writes (the serving process,
-- `passerelle import` or `seed` in another process, sqlite3). SQLite has no statement triggers:
-- these run once per row written, a counter update in a page the transaction already holds.
CREATE TABLE data_changes (
    kind TEXT PRIMARY KEY NOT NULL,
    n    BIGINT NOT NULL
);
INSERT INTO data_changes (kind, n) VALUES
    ('partners', 0), ('actors', 0), ('actions', 0), ('outcomes', 0), ('partnerships', 0);

-- The same counters for the serving process's own writes: its connections move them with TEMP
-- triggers carrying its writer tag (`storage::changes::tag_own_writes`), so that the feed
-- tells other writers' writes (the counter moved more than the own one) from its own, which
-- already invalidated its caches as they committed.
CREATE TABLE own_data_changes (
    writer TEXT NOT NULL,
    kind   TEXT NOT NULL,
    n      BIGINT NOT NULL,
    PRIMARY KEY (writer, kind)
);

CREATE TRIGGER partners_inserted_data_changed AFTER INSERT ON partners
BEGIN UPDATE data_changes SET n = n + 1 WHERE kind = 'partners'; END;
CREATE TRIGGER partners_updated_data_changed AFTER UPDATE ON partners
BEGIN UPDATE data_changes SET n = n + 1 WHERE kind = 'partners'; END;
CREATE TRIGGER partners_deleted_data_changed AFTER DELETE ON partners
BEGIN UPDATE data_changes SET n = n + 1 WHERE kind = 'partners'; END;
CREATE TRIGGER actors_inserted_data_changed AFTER INSERT ON actors
BEGIN UPDATE data_changes SET n = n + 1 WHERE kind = 'actors'; END;
CREATE TRIGGER actors_updated_data_changed AFTER UPDATE ON actors
BEGIN UPDATE data_changes SET n = n + 1 WHERE kind = 'actors'; END;
CREATE TRIGGER actors_deleted_data_changed AFTER DELETE ON actors
BEGIN UPDATE data_changes SET n = n + 1 WHERE kind = 'actors'; END;
CREATE TRIGGER actions_inserted_data_changed AFTER INSERT ON actions
BEGIN UPDATE data_changes SET n = n + 1 WHERE kind = 'actions'; END;
CREATE TRIGGER actions_updated_data_changed AFTER UPDATE ON actions
BEGIN UPDATE data_changes SET n = n + 1 WHERE kind = 'actions'; END;
CREATE TRIGGER actions_deleted_data_changed AFTER DELETE ON actions
BEGIN UPDATE data_changes SET n = n + 1 WHERE kind = 'actions'; END;
CREATE TRIGGER action_themes_inserted_data_changed AFTER INSERT ON action_themes
BEGIN UPDATE data_changes SET n = n + 1 WHERE kind = 'actions'; END;
CREATE TRIGGER action_themes_updated_data_changed AFTER UPDATE ON action_themes
BEGIN UPDATE data_changes SET n = n + 1 WHERE kind = 'actions'; END;
CREATE TRIGGER action_themes_deleted_data_changed AFTER DELETE ON action_themes
BEGIN UPDATE data_changes SET n = n + 1 WHERE kind = 'actions'; END;
CREATE TRIGGER action_places_inserted_data_changed AFTER INSERT ON action_places
BEGIN UPDATE data_changes SET n = n + 1 WHERE kind = 'actions'; END;
CREATE TRIGGER action_places_updated_data_changed AFTER UPDATE ON action_places
BEGIN UPDATE data_changes SET n = n + 1 WHERE kind = 'actions'; END;
CREATE TRIGGER action_places_deleted_data_changed AFTER DELETE ON action_places
BEGIN UPDATE data_changes SET n = n + 1 WHERE kind = 'actions'; END;
CREATE TRIGGER outcomes_inserted_data_changed AFTER INSERT ON outcomes
BEGIN UPDATE data_changes SET n = n + 1 WHERE kind = 'outcomes'; END;
CREATE TRIGGER outcomes_updated_data_changed AFTER UPDATE ON outcomes
BEGIN UPDATE data_changes SET n = n + 1 WHERE kind = 'outcomes'; END;
CREATE TRIGGER outcomes_deleted_data_changed AFTER DELETE ON outcomes
BEGIN UPDATE data_changes SET n = n + 1 WHERE kind = 'outcomes'; END;
CREATE TRIGGER outcome_disaggregations_inserted_data_changed AFTER INSERT ON outcome_disaggregations
BEGIN UPDATE data_changes SET n = n + 1 WHERE kind = 'outcomes'; END;
CREATE TRIGGER outcome_disaggregations_updated_data_changed AFTER UPDATE ON outcome_disaggregations
BEGIN UPDATE data_changes SET n = n + 1 WHERE kind = 'outcomes'; END;
CREATE TRIGGER outcome_disaggregations_deleted_data_changed AFTER DELETE ON outcome_disaggregations
BEGIN UPDATE data_changes SET n = n + 1 WHERE kind = 'outcomes'; END;
CREATE TRIGGER partnerships_inserted_data_changed AFTER INSERT ON partnerships
BEGIN UPDATE data_changes SET n = n + 1 WHERE kind = 'partnerships'; END;
CREATE TRIGGER partnerships_updated_data_changed AFTER UPDATE ON partnerships
BEGIN UPDATE data_changes SET n = n + 1 WHERE kind = 'partnerships'; END;
CREATE TRIGGER partnerships_deleted_data_changed AFTER DELETE ON partnerships
BEGIN UPDATE data_changes SET n = n + 1 WHERE kind = 'partnerships'; END;
CREATE TRIGGER partnership_members_inserted_data_changed AFTER INSERT ON partnership_members
BEGIN UPDATE data_changes SET n = n + 1 WHERE kind = 'partnerships'; END;
CREATE TRIGGER partnership_members_updated_data_changed AFTER UPDATE ON partnership_members
BEGIN UPDATE data_changes SET n = n + 1 WHERE kind = 'partnerships'; END;
CREATE TRIGGER partnership_members_deleted_data_changed AFTER DELETE ON partnership_members
BEGIN UPDATE data_changes SET n = n + 1 WHERE kind = 'partnerships'; END;
