"""Training: candidates x cross-validation, the final fit, evaluation, registry and the gate."""
