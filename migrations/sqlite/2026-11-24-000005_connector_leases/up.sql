-- Pull connectors under `serve`: which replica runs a connector's pass, until when. A replica
-- takes the lease with one conditional write (free, expired, or already its own) and renews it
-- with each committed page, so two replicas never run the same connector at once.
CREATE TABLE connector_leases (
    partner_id  TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    -- Unix milliseconds.
    expires_at  BIGINT NOT NULL
);
