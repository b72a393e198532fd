DROP TABLE connector_cursors;
