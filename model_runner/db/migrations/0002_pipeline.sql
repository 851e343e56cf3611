-- What the Airflow pipeline keeps: which watched source found a tweet, the review queue, daily
-- inspection statistics and the alert ledger that makes every alert e-mail go out once.

-- The embedding-cache key of the tweet's normalised text (model_runner/store/keys.py), so tweets join
-- the embeddings table directly. Filled by the pipeline on upsert (it is a hash of a Python
-- normalisation, so SQL cannot compute it).
ALTER TABLE tweets ADD COLUMN text_hash bytea;
CREATE INDEX tweets_text_hash ON tweets (text_hash);
CREATE INDEX tweets_created_at ON tweets (created_at);

-- A tweet can match several watched accounts/queries; tweets.found_by keeps only the first one.
CREATE TABLE tweet_sources (
    tweet_id      bigint      NOT NULL REFERENCES tweets (tweet_id) ON DELETE CASCADE,
    found_by      text        NOT NULL,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tweet_id, found_by)
);
CREATE INDEX tweet_sources_found_by ON tweet_sources (found_by, tweet_id);

-- Inspected tweets the model was unsure about, waiting for a human label (POST /labels removes them).
CREATE TABLE review_queue (
    task            text        NOT NULL,
    tweet_id        bigint      NOT NULL REFERENCES tweets (tweet_id) ON DELETE CASCADE,
    text_hash       bytea       NOT NULL,
    model_version   text        NOT NULL,
    predicted_label text        NOT NULL,
    top_score       real        NOT NULL,
    queued_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task, tweet_id)
);
CREATE INDEX review_queue_text_hash ON review_queue (task, text_hash);
CREATE INDEX review_queue_top_score ON review_queue (task, top_score);

-- One row per task, source and UTC day; recomputed (upserted) from tweets + latest predictions.
CREATE TABLE inspection_daily_stats (
    task            text        NOT NULL,
    found_by        text        NOT NULL,
    day             date        NOT NULL,
    volume          integer     NOT NULL CHECK (volume >= 0),
    counts          jsonb       NOT NULL,
    shares          jsonb       NOT NULL,
    mean_confidence real,
    model_versions  text[]      NOT NULL DEFAULT '{}',
    mlflow_run_id   text,
    computed_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task, found_by, day)
);

-- Alert ledger: claim (pending) -> sent, or released when sending failed; resolved when the
-- condition cleared. A claim carries a token so only its holder can confirm or release it, and a
-- pending claim whose holder died becomes claimable again after its lease.
CREATE TABLE alerts (
    key           text        PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 200),
    kind          text        NOT NULL,
    state         text        NOT NULL CHECK (state IN ('pending', 'sent', 'released', 'resolved')),
    summary       text,
    claim_token   uuid,
    occurrences   integer     NOT NULL DEFAULT 1,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    claimed_at    timestamptz,
    sent_at       timestamptz,
    resolved_at   timestamptz
);
CREATE INDEX alerts_kind_state ON alerts (kind, state);
