-- Core schema: embedding cache, labelled examples, tweets, predictions, training jobs.
CREATE EXTENSION IF NOT EXISTS vector;

-- One row per (encoder, revision): the dimension every vector of that encoder must have.
CREATE TABLE encoders (
    encoder_id       text        NOT NULL,
    encoder_revision text        NOT NULL,
    dim              integer     NOT NULL CHECK (dim > 0 AND dim <= 16000),
    registered_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (encoder_id, encoder_revision)
);

-- The column is an unconstrained `vector` so several encoders (of different widths) share one table;
-- the check pins every row to its encoder's width and a partial HNSW index per width
-- (created by the store on first use, see model_runner/store/embeddings.py) makes k-NN fast.
CREATE TABLE embeddings (
    encoder_id       text        NOT NULL,
    encoder_revision text        NOT NULL,
    text_hash        bytea       NOT NULL,
    dim              integer     NOT NULL,
    embedding        vector      NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (encoder_id, encoder_revision, text_hash),
    FOREIGN KEY (encoder_id, encoder_revision) REFERENCES encoders (encoder_id, encoder_revision),
    CHECK (vector_dims(embedding) = dim)
);

CREATE TABLE labelled_examples (
    id          bigserial   PRIMARY KEY,
    task        text        NOT NULL DEFAULT 'sentiment',
    text        text        NOT NULL,
    text_hash   bytea       NOT NULL,
    label       text        NOT NULL,
    source      text        NOT NULL,
    split       text        NOT NULL DEFAULT 'train',
    added_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (task, text_hash)
);
CREATE INDEX labelled_examples_added_at ON labelled_examples (task, added_at);

CREATE TABLE tweets (
    tweet_id    bigint      PRIMARY KEY,
    author      text,
    text        text        NOT NULL,
    created_at  timestamptz,
    found_by    text        NOT NULL,
    fetched_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tweets_found_by_created ON tweets (found_by, created_at);

CREATE TABLE predictions (
    tweet_id      bigint      NOT NULL REFERENCES tweets (tweet_id) ON DELETE CASCADE,
    task          text        NOT NULL DEFAULT 'sentiment',
    model_version text        NOT NULL,
    label         text        NOT NULL,
    scores        jsonb       NOT NULL,
    predicted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tweet_id, task, model_version)
);
CREATE INDEX predictions_predicted_at ON predictions (task, predicted_at);

CREATE TABLE training_jobs (
    id            uuid        PRIMARY KEY,
    task          text        NOT NULL DEFAULT 'sentiment',
    state         text        NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    stage         text,
    progress      real        NOT NULL DEFAULT 0 CHECK (progress >= 0 AND progress <= 1),
    params        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    metrics       jsonb,
    model_version text,
    error         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
-- At most one job may be queued or running: the database, not the app, enforces it.
CREATE UNIQUE INDEX training_jobs_one_active ON training_jobs ((true)) WHERE state IN ('queued', 'running');
