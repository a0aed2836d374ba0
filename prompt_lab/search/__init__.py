"""Automatic prompt search: a proposer model rewrites a template's instruction, candidates are scored on a dev
split, the best few seed the next round, and the winner is judged once against the original on a held-out test
split. `spec.py` is the SearchSpec and the seeded split; `proposals.py` what the proposer is asked and how its reply
becomes a candidate; `loop.py` the rounds, budgets, Stop and resume; `results.py` what a search found."""
