"""tweetpulse ModelRunner: trains, evaluates, registers and serves tweet-sentiment adapters."""

__version__ = "0.1.0"
