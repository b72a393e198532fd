-- Passerelle foundation schema (SQLite). Keep in step with migrations/postgres.
-- Dates are ISO 8601 text on both backends: `starts_on`/`ends_on` keep the precision the source
-- gave (2020, 2021-09, 2021-03-31); `start_bound`/`end_bound` are the full dates used to filter.

CREATE TABLE partners (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    description TEXT,
    created_at  TEXT NOT NULL
);

CREATE TABLE actors (
    id               TEXT PRIMARY KEY NOT NULL,
    owner_partner_id TEXT NOT NULL REFERENCES partners(id),
    kind             TEXT NOT NULL,
    name             TEXT NOT NULL,
    acronym          TEXT,
    description      TEXT,
    website          TEXT,
    territory_code   TEXT,
    territory_name   TEXT,
    parent_actor_id  TEXT REFERENCES actors(id),
    visibility       TEXT NOT NULL CHECK (visibility IN ('private', 'partners', 'public')),
    source           TEXT NOT NULL,
    source_ref       TEXT,
    imported_at      TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    retired_at       TEXT,
    content_hash     TEXT NOT NULL,
    search_text      TEXT NOT NULL
);
CREATE INDEX actors_owner_idx ON actors(owner_partner_id);
CREATE INDEX actors_name_idx ON actors(name, id);

CREATE TABLE actions (
    id               TEXT PRIMARY KEY NOT NULL,
    owner_partner_id TEXT NOT NULL REFERENCES partners(id),
    kind             TEXT NOT NULL,
    title            TEXT NOT NULL,
    summary          TEXT,
    status           TEXT,
    starts_on        TEXT,
    ends_on          TEXT,
    start_bound      TEXT,
    end_bound        TEXT,
    sort_start       TEXT NOT NULL,
    schedule         TEXT,
    parent_action_id TEXT REFERENCES actions(id),
    website          TEXT,
    visibility       TEXT NOT NULL CHECK (visibility IN ('private', 'partners', 'public')),
    source           TEXT NOT NULL,
    source_ref       TEXT,
    imported_at      TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    retired_at       TEXT,
    content_hash     TEXT NOT NULL,
    search_text      TEXT NOT NULL
);
CREATE INDEX actions_owner_idx ON actions(owner_partner_id);
CREATE INDEX actions_title_idx ON actions(title, id);
CREATE INDEX actions_start_idx ON actions(sort_start, id);
CREATE INDEX actions_parent_idx ON actions(parent_action_id);

CREATE TABLE action_themes (
    action_id TEXT NOT NULL REFERENCES actions(id) ON DELETE CASCADE,
    theme     TEXT NOT NULL,
    PRIMARY KEY (action_id, theme)
);
CREATE INDEX action_themes_theme_idx ON action_themes(theme);

CREATE TABLE action_places (
    action_id  TEXT NOT NULL REFERENCES actions(id) ON DELETE CASCADE,
    position   INTEGER NOT NULL,
    name       TEXT NOT NULL,
    level      TEXT NOT NULL,
    insee_code TEXT,
    PRIMARY KEY (action_id, position)
);
CREATE INDEX action_places_insee_idx ON action_places(insee_code);

CREATE TABLE outcomes (
    id               TEXT PRIMARY KEY NOT NULL,
    owner_partner_id TEXT NOT NULL REFERENCES partners(id),
    action_id        TEXT NOT NULL REFERENCES actions(id),
    indicator        TEXT NOT NULL,
    measure          TEXT NOT NULL,
    value            DOUBLE,
    unit             TEXT,
    statement        TEXT,
    period_start     TEXT,
    period_end       TEXT,
    start_bound      TEXT,
    end_bound        TEXT,
    visibility       TEXT NOT NULL CHECK (visibility IN ('private', 'partners', 'public')),
    source           TEXT NOT NULL,
    source_ref       TEXT,
    imported_at      TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    retired_at       TEXT,
    content_hash     TEXT NOT NULL,
    search_text      TEXT NOT NULL
);
CREATE INDEX outcomes_action_idx ON outcomes(action_id);
CREATE INDEX outcomes_owner_idx ON outcomes(owner_partner_id);
CREATE INDEX outcomes_indicator_idx ON outcomes(indicator, id);

CREATE TABLE outcome_disaggregations (
    outcome_id TEXT NOT NULL REFERENCES outcomes(id) ON DELETE CASCADE,
    position   INTEGER NOT NULL,
    dimension  TEXT NOT NULL,
    category   TEXT NOT NULL,
    value      DOUBLE,
    PRIMARY KEY (outcome_id, position)
);

CREATE TABLE partnerships (
    id               TEXT PRIMARY KEY NOT NULL,
    owner_partner_id TEXT NOT NULL REFERENCES partners(id),
    action_id        TEXT REFERENCES actions(id),
    name             TEXT NOT NULL,
    description      TEXT,
    starts_on        TEXT,
    ends_on          TEXT,
    start_bound      TEXT,
    end_bound        TEXT,
    visibility       TEXT NOT NULL CHECK (visibility IN ('private', 'partners', 'public')),
    source           TEXT NOT NULL,
    source_ref       TEXT,
    imported_at      TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    retired_at       TEXT,
    content_hash     TEXT NOT NULL,
    search_text      TEXT NOT NULL
);
CREATE INDEX partnerships_action_idx ON partnerships(action_id);
CREATE INDEX partnerships_owner_idx ON partnerships(owner_partner_id);
CREATE INDEX partnerships_name_idx ON partnerships(name, id);

CREATE TABLE partnership_members (
    partnership_id TEXT NOT NULL REFERENCES partnerships(id) ON DELETE CASCADE,
    position       INTEGER NOT NULL,
    actor_id       TEXT NOT NULL REFERENCES actors(id),
    role           TEXT NOT NULL,
    PRIMARY KEY (partnership_id, position)
);
CREATE INDEX partnership_members_actor_idx ON partnership_members(actor_id);
