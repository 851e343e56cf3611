-- Which supervising process runs a job ("host:pid:start-time" of the service or train process that
-- started its worker). Several train processes may share a host: one that starts up adopts only the
-- workers whose supervisor is gone, never those of a live neighbour.
ALTER TABLE training_jobs ADD COLUMN claimed_by text;
