"""Reading an answer out of a model's output and judging it against the gold answer."""
