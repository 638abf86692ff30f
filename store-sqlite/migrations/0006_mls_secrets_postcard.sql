-- Plait node store, schema version 6: no table changes. From this version, the value of the
-- `mls_state` row that holds a group's MLS message secrets may be postcard (a 0xb1 tag byte, then
-- the value) instead of JSON (`kernel/src/mls/storage.rs`). This build reads both; a build that
-- knows only version 5 reads only JSON, so the version step makes it refuse such a database
-- instead of failing inside openmls.
SELECT 1;
