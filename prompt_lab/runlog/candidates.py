"""A prompt search's candidates in the run log (table search_candidates, migration m007): written as each is
proposed, then given its dev score, and, for the two tested at the end, its held-out test score."""
from __future__ import annotations

from sqlite_utils import Database

from prompt_lab.runlog.store import utc_now, visible

CANDIDATE_STATUSES = ("proposed", "scored", "invalid")


def add_candidate(db: Database, run_id: int, *, in_round: int, text: str, parent_id: int | None,
                  template_hash: str = "", status: str = "proposed", reason: str | None = None, calls: int = 0,
                  seconds: float = 0.0) -> int:
    """Log a candidate as it is proposed (or refused: status invalid, with the reason); returns its id."""
    if status not in CANDIDATE_STATUSES:
        raise ValueError(f"unknown candidate status {status!r}")
    with db.conn:
        cursor = db.conn.execute(
            "insert into search_candidates (run_id, round, parent_id, text, template_hash, status, reason, calls, "
            "seconds, created_utc) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, in_round, parent_id, text, template_hash, status, reason, calls, round_s(seconds), utc_now()))
        return cursor.lastrowid


def round_s(seconds: float) -> float:
    return round(float(seconds), 3)


def score_candidate(db: Database, candidate_id: int, *, dev_score: float, dev_n: int, calls: int,
                    seconds: float) -> None:
    """Record a candidate's dev score; its calls and seconds add to those of its proposal."""
    with db.conn:
        db.conn.execute("update search_candidates set status = 'scored', dev_score = ?, dev_n = ?, "
                        "calls = coalesce(calls, 0) + ?, seconds = coalesce(seconds, 0) + ? where id = ?",
                        (dev_score, dev_n, calls, round_s(seconds), candidate_id))


def test_candidate(db: Database, candidate_id: int, *, test_score: float, test_n: int) -> None:
    """Record a candidate's score on the held-out test split (the winner and the original only)."""
    with db.conn:
        db.conn.execute("update search_candidates set test_score = ?, test_n = ? where id = ?",
                        (test_score, test_n, candidate_id))


def run_candidates(db: Database, run_id: int) -> list[dict]:
    """Every candidate of a search run the current visitor may see, in the order they were proposed."""
    where, args = visible()
    return [dict(r) for r in db.query(
        f"select * from search_candidates where run_id = ? and run_id in (select id from runs where {where}) "
        "order by id", [run_id] + args)]


def version_rows(db: Database, run_id: int, template_hash: str, item_indexes: list[int]) -> dict[int, dict]:
    """The first logged answer of one template version for each of these items of a run (item index -> row with
    its score, answer, gold and choices): what a candidate scored on the dev or the test split."""
    wanted = set(item_indexes)
    out: dict[int, dict] = {}
    for row in db.query("select item_index, score, correct, answer, target, targets_json, choices_json, "
                        "label_probs_json, variables_json, item_hash from generations where run_id = ? and "
                        "template_hash = ? and item_index is not null order by id", [run_id, template_hash]):
        if row["item_index"] in wanted and row["item_index"] not in out:
            out[row["item_index"]] = dict(row)
    return out
