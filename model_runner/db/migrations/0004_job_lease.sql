-- Training jobs carry a heartbeat lease: the worker renews lease_expires_at every lease/4 seconds and
-- every write it makes names its lease_token, so a worker whose job was failed (lease expired, service
-- restarted) can no longer touch the row. worker_started_at (the process start time) tells a surviving
-- worker from an unrelated process that reused its pid.
ALTER TABLE training_jobs
    ADD COLUMN lease_token text,
    ADD COLUMN heartbeat_at timestamptz,
    ADD COLUMN lease_expires_at timestamptz,
    ADD COLUMN worker_started_at timestamptz;
