"""What tweetpulse keeps in Postgres: the embedding cache, the labelled examples, the training jobs."""

from model_runner.store.embeddings import CacheStats, EmbeddingDimensionError, EmbeddingStore, Neighbour
from model_runner.store.examples import ExampleStore
from model_runner.store.keys import normalise, text_key

__all__ = [
    "CacheStats",
    "EmbeddingDimensionError",
    "EmbeddingStore",
    "ExampleStore",
    "Neighbour",
    "normalise",
    "text_key",
]
