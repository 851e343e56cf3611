-- Where in its stage a training job is ("epoch 2/3, batch 120/400, loss 0.412"): the worker writes it
-- with the progress, GET /train shows it next to the stage.
ALTER TABLE training_jobs ADD COLUMN detail text;
