DROP TABLE connector_leases;
