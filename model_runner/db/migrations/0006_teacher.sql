-- Distillation teachers and their predictions (model_runner/teacher/). A teacher is a fine-tuned copy
-- of a larger encoder; its key names the base weights and what it was fitted on, and its logits for
-- each training text are cached like embeddings, so a weekly retrain runs the teacher only on texts it
-- has not seen.
CREATE TABLE teachers (
    teacher_key   text        PRIMARY KEY,  -- <base id>@<base revision>/ft-<fit hash>
    task          text        NOT NULL,
    base_id       text        NOT NULL,
    base_revision text        NOT NULL,
    labels        jsonb       NOT NULL,
    data_hash     text        NOT NULL,     -- of the rows it was fitted on
    train_rows    integer     NOT NULL,
    path          text        NOT NULL,     -- its model folder on the machine that fitted it
    run_id        text,                     -- the MLflow run that holds a copy (artifact "teacher")
    params        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    seconds       real,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX teachers_task_created ON teachers (task, created_at DESC);

CREATE TABLE teacher_logits (
    teacher_key text        NOT NULL REFERENCES teachers (teacher_key) ON DELETE CASCADE,
    text_hash   bytea       NOT NULL,       -- store/keys.py: sha256 of the normalised text
    logits      real[]      NOT NULL,
    in_sample   boolean     NOT NULL,       -- the teacher was fitted on this text
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (teacher_key, text_hash)
);
