"""Turning logged runs into figures a person reads: summaries, baselines, paired tests, charts."""
