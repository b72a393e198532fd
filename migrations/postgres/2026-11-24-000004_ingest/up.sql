-- Pull connectors: where each partner's source was last read up to.
CREATE TABLE connector_cursors (
    partner_id  TEXT PRIMARY KEY REFERENCES partners (id),
    cursor      TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
