"""Publishing promoted models to the Hugging Face Hub.

``model_runner.hub.push.push_model`` commits a saved ``TweetClassifier`` folder plus the model card from
``model_runner.hub.card.render_model_card``. Nothing is re-exported here so that rendering a card does not
import torch (``push`` verifies the folder with the classifier module).
"""
