"""MLflow "models from code" entry script: MLflow copies this file into the logged model and executes
it on load, after putting the model's ``code/`` folder (the shipped ``model_runner`` package) on
``sys.path``. Not meant to be imported by the service (it sets MLflow's current code model)."""

import mlflow

from model_runner.registry.pyfunc import TweetPulsePyfunc

mlflow.models.set_model(TweetPulsePyfunc())
