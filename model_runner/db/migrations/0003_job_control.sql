-- Training jobs run in their own process: the service needs to ask them to stop, find them after a
-- restart and keep what they produced beyond the headline metrics.
ALTER TABLE training_jobs
    ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false,
    ADD COLUMN worker_pid integer,
    ADD COLUMN worker_host text,
    ADD COLUMN result jsonb NOT NULL DEFAULT '{}'::jsonb;
CREATE INDEX training_jobs_created_at ON training_jobs (created_at DESC);
