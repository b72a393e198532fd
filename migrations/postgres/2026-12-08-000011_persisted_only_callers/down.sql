DROP TABLE persisted_only_callers;
