"""The run log (runs.db): the only package that speaks SQL."""
from sqlite_utils import Database  # the connection type, for type hints outside this package

__all__ = ["Database"]
