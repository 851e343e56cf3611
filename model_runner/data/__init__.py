"""Dataset preparation: read labelled tweets from any supported source and prepare train/eval splits.

Typical use::

    from model_runner.data import prepare_dataset

    data = prepare_dataset("../shared/datasets/tweet-sentiment")
    data.train, data.eval, data.labels, data.summary.to_dict()
"""

from model_runner.data.cleaning import clean_text
from model_runner.data.preparation import DataSummary, PreparedData, prepare_dataset
from model_runner.data.readers import DataError, read_source

__all__ = ["DataError", "DataSummary", "PreparedData", "clean_text", "prepare_dataset", "read_source"]
