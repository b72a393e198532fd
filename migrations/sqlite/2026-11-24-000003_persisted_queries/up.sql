-- Persisted queries (SQLite). Keep in step with migrations/postgres.
-- `trusted` rows come from an apollo-persisted-query-manifest (their id is the manifest's id);
-- the others were registered by automatic persisted queries (their id is the SHA-256 of `body`).
CREATE TABLE persisted_queries (
    id             TEXT PRIMARY KEY NOT NULL,
    body           TEXT NOT NULL,
    operation_name TEXT,
    trusted        BOOLEAN NOT NULL DEFAULT 0,
    created_at     TEXT NOT NULL
);
