"""The deployable classifier, its heads and its int8 serving variant."""
