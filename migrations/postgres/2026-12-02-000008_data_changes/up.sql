-- Tells every replica which kinds of record a committed write touched, so that each drops the
-- cached answers holding them (`src/storage/changes.rs`, `src/http/cache.rs`). Triggers, so that a
-- write from anywhere (another replica, the CLI, psql) is told. A notification is delivered at
-- commit, never for a write rolled back, and takes no row lock: concurrent writers do not wait
-- on each other for it. The payload is the kind's plural name, a space and the writer's tag: a
-- Passerelle process tags its connections (`SET passerelle.writer`) to tell its own writes, which
-- it has already accounted for, from everyone else's (untagged: psql).
CREATE FUNCTION data_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('passerelle_data_changes',
                      TG_ARGV[0] || ' ' || coalesce(current_setting('passerelle.writer', true), ''));
    RETURN NULL;
END
$$;

CREATE TRIGGER partners_data_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON partners
    FOR EACH STATEMENT EXECUTE FUNCTION data_changed('partners');
CREATE TRIGGER actors_data_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON actors
    FOR EACH STATEMENT EXECUTE FUNCTION data_changed('actors');
CREATE TRIGGER actions_data_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON actions
    FOR EACH STATEMENT EXECUTE FUNCTION data_changed('actions');
CREATE TRIGGER action_themes_data_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON action_themes
    FOR EACH STATEMENT EXECUTE FUNCTION data_changed('actions');
CREATE TRIGGER action_places_data_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON action_places
    FOR EACH STATEMENT EXECUTE FUNCTION data_changed('actions');
CREATE TRIGGER outcomes_data_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON outcomes
    FOR EACH STATEMENT EXECUTE FUNCTION data_changed('outcomes');
CREATE TRIGGER outcome_disaggregations_data_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON outcome_disaggregations
    FOR EACH STATEMENT EXECUTE FUNCTION data_changed('outcomes');
CREATE TRIGGER partnerships_data_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON partnerships
    FOR EACH STATEMENT EXECUTE FUNCTION data_changed('partnerships');
CREATE TRIGGER partnership_members_data_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON partnership_members
    FOR EACH STATEMENT EXECUTE FUNCTION data_changed('partnerships');
