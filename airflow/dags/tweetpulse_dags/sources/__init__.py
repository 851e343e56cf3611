"""Where inspected tweets come from: the X API v2 (tweepy) or a local JSON Lines replay."""
