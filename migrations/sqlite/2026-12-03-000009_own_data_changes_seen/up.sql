-- When each serving process last said it was alive (unix seconds), beside its own-write counters.
-- A process starting up removes only the counters of processes silent for long
-- (`storage::changes`), no longer those of another process serving the same file beside it.
ALTER TABLE own_data_changes ADD COLUMN seen_at BIGINT NOT NULL DEFAULT 0;
