-- What /inference answered, sampled (TWEETPULSE_SERVED_SAMPLE_RATE) by each serving replica's
-- recorder (model_runner/monitoring/). text_hash is the embedding-cache key of the cleaned text
-- (model_runner/store/keys.py), so served texts join the embeddings and tweets tables by hash; the
-- text itself only with TWEETPULSE_SERVED_STORE_TEXT. Rows older than TWEETPULSE_SERVED_RETENTION_DAYS
-- are deleted by the recorder.
CREATE TABLE served_predictions (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task          text        NOT NULL,
    text_hash     bytea       NOT NULL,
    text          text,
    model_name    text        NOT NULL,
    model_version text        NOT NULL,
    label         text        NOT NULL,
    confidence    real        NOT NULL,
    served_at     timestamptz NOT NULL DEFAULT now(),
    replica       text
);
CREATE INDEX served_predictions_task_time ON served_predictions (task, served_at);
-- retention deletes by time across tasks
CREATE INDEX served_predictions_time ON served_predictions (served_at);
