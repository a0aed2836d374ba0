"""Running strategies over a dataset: datasets, experiment specs, the evaluation loop, statistics."""
