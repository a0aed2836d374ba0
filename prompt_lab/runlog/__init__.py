"""The run log (runs.db): the only package that speaks SQL."""
