-- Client ids or partner slugs that may run only trusted documents, set with
-- `passerelle pq only add` and read by running servers every second (no restart needed);
-- beside the `persisted_only` setting.
CREATE TABLE persisted_only_callers (
    caller      TEXT PRIMARY KEY NOT NULL,
    created_at  TEXT NOT NULL
);
