"""Training: candidates x cross-validation, the final fit, evaluation, registry and the gate.

``run.run_training`` lists the stages of a run; the rest is what the stages use:

- ``plan``: what a run will try (candidates, folds, metric, encoder), fixed before it trains
- ``folds``: the rows a fit sees (``Split``, frozen ``CVData``) and the cross-validation folds
- ``warmup``: an encoder tuned on another task's tweets first, for the encoder adapters
- ``cv``: every candidate on every fold, in parallel; ``fitting``: fit and predict any candidate
  (``fit_heads`` on cached embeddings, ``fit_lora`` LoRA and full fine-tuning from tokens)
- ``search_space``: every adapter and the hyperparameters CV chooses from
- ``gate``: the candidate against the champion on the same held-out rows
- ``tracking``: ``RunTracker``, every MLflow call of a run; ``clock``: ``TrainingClock``, progress,
  stage timing and cancellation
"""
