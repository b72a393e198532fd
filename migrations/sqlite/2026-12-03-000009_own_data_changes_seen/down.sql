ALTER TABLE own_data_changes DROP COLUMN seen_at;
