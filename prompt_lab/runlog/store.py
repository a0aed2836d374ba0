"""The run log: one SQLite file (sqlite-utils), append-only migrations, short write transactions.

A run row is written as `running` before its work starts, with the pid and start time of the process
that owns it; a later process that finds a `running` row whose owner is gone marks it `interrupted`.
Open a connection per thread or operation with `with connect() as db:`; it is cheap, and closed when the block ends.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import sqlite_utils
from sqlite_utils import Migrations

from prompt_lab.access import visitors
from prompt_lab.errors import CancelledError
from prompt_lab.settings import get_settings

RUN_STATUSES = ("running", "completed", "failed", "cancelled", "interrupted")
migrations = Migrations("prompt_lab")


# Released migrations are never edited: add a new function below the last one.
@migrations()
def m001_runs_and_generations(db: sqlite_utils.Database) -> None:
    db["runs"].create({
        "id": int, "kind": str, "status": str, "created_utc": str, "finished_utc": str, "duration_ms": float,
        "template_name": str, "template_hash": str, "models_json": str, "strategies_json": str,
        "params_json": str, "options_json": str, "variables_json": str, "command": str, "error": str,
        "owner_pid": int, "owner_start": str,
    }, pk="id", if_not_exists=True)
    db["generations"].create({
        "id": int, "run_id": int, "created_utc": str, "template_name": str, "template_hash": str,
        "strategy": str, "model_spec": str, "model_revision": str, "variables_json": str, "prompt": str,
        "params_json": str, "seed": int, "sample_index": int, "output": str, "answer": str,
        "prompt_tokens": int, "completion_tokens": int, "latency_ms": float, "tokens_per_s": float,
        "finish_reason": str,
    }, pk="id", foreign_keys=[("run_id", "runs", "id")], if_not_exists=True)
    db["template_versions"].create({
        "hash": str, "name": str, "content_yaml": str, "created_utc": str,
    }, pk="hash", if_not_exists=True)
    db["runs"].create_index(["created_utc"], if_not_exists=True)
    db["runs"].create_index(["status"], if_not_exists=True)
    db["generations"].create_index(["run_id"], if_not_exists=True)


@migrations()
def m002_evaluation_columns(db: sqlite_utils.Database) -> None:
    generations = db["generations"]
    for name, kind in (("item_index", int), ("k_shot", int), ("target", str), ("strict_answer", str),
                       ("correct", int), ("correct_strict", int), ("score", float), ("label_probs_json", str)):
        if name not in generations.columns_dict:
            generations.add_column(name, kind)
    generations.create_index(["run_id", "strategy", "model_spec", "k_shot", "item_index"], if_not_exists=True)


@migrations()
def m003_jobs(db: sqlite_utils.Database) -> None:
    db["jobs"].create({
        "id": int, "kind": str, "name": str, "status": str, "spec_json": str, "created_utc": str,
        "started_utc": str, "finished_utc": str, "pid": int, "owner_start": str, "step": int, "max_steps": int,
        "loss": float, "val_loss": float, "learning_rate": float, "samples_per_s": float, "eta_s": float,
        "error": str, "adapter_path": str, "eval_run_id": int, "metrics_json": str, "resume": int,
    }, pk="id", if_not_exists=True)
    db["job_events"].create({
        "id": int, "job_id": int, "created_utc": str, "step": int, "loss": float, "val_loss": float,
        "learning_rate": float,
    }, pk="id", foreign_keys=[("job_id", "jobs", "id")], if_not_exists=True)
    db["job_events"].create_index(["job_id", "step"], if_not_exists=True)


@migrations()
def m004_token_source(db: sqlite_utils.Database) -> None:
    """Where a generation's token counts come from: the model's tokenizer here (local), the server's usage
    report (server), or a ~4 characters per token estimate for a remote model with neither (estimate)."""
    if "token_source" not in db["generations"].columns_dict:
        db["generations"].add_column("token_source", str)


@migrations()
def m005_item_identity(db: sqlite_utils.Database) -> None:
    """What an evaluation item is, so two runs pair by content rather than position: its content hash (inputs and
    gold, evaluation.datasets.item_hash), every acceptable gold answer when there are several (targets_json), and
    the item's own answer choices when the dataset gives them (choices_json). Rows logged before have none: the
    report computes their hash from variables_json and target."""
    generations = db["generations"]
    for name in ("item_hash", "targets_json", "choices_json"):
        if name not in generations.columns_dict:
            generations.add_column(name, str)


@migrations()
def m006_visitors(db: sqlite_utils.Database) -> None:
    """Who made each run and job (access.visitors: "" is the local user, and every row logged before), so a public
    Space shows each visitor only their own."""
    for table in ("runs", "jobs"):
        if "visitor" not in db[table].columns_dict:
            db[table].add_column("visitor", str)
        db[table].create_index(["visitor", "id"], if_not_exists=True)


@migrations()
def m007_search_candidates(db: sqlite_utils.Database) -> None:
    """A prompt search's candidates (search/): each proposed instruction with its round, the candidate it was
    written from, its template version, its dev score, the model calls and seconds it took, and, for the two the
    search tests at the end, its score on the held-out test split."""
    db["search_candidates"].create({
        "id": int, "run_id": int, "round": int, "parent_id": int, "text": str, "template_hash": str, "status": str,
        "reason": str, "dev_score": float, "dev_n": int, "calls": int, "seconds": float, "test_score": float,
        "test_n": int, "created_utc": str,
    }, pk="id", foreign_keys=[("run_id", "runs", "id")], if_not_exists=True)
    db["search_candidates"].create_index(["run_id", "round"], if_not_exists=True)


def visible(alias: str = "runs") -> tuple[str, list]:
    """A SQL condition (and its arguments) on `alias`.visitor: the rows the current visitor may see."""
    visitor = visitors.current()
    if visitor.sees_all:
        return "1 = 1", []
    if visitor == visitors.NOBODY:  # a request that names no visitor sees nothing, not what other such requests made
        return "0 = 1", []
    if visitor.shared_runs and alias != "jobs":  # runs opened through a link (access.links) are readable too
        shared = sorted(visitor.shared_runs)
        return (f"(coalesce({alias}.visitor, '') = ? or {alias}.id in ({', '.join('?' * len(shared))}))",
                [visitor.key] + shared)
    return f"coalesce({alias}.visitor, '') = ?", [visitor.key]


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def process_start(pid: int) -> str:
    """A token that differs between two processes that reuse one pid (Linux: start time in ticks)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2:].split()[19]
    except (OSError, ValueError, IndexError):
        return ""


def owner_alive(pid: int | None, start: str | None) -> bool:
    """Whether the process that wrote (pid, start) still runs: not gone, not a zombie, not a reused pid."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (ended, not yet reaped by its parent) is not alive
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    except (OSError, IndexError):
        pass
    return not start or process_start(pid) == start


_prepared: set[str] = set()
_prepared_lock = threading.Lock()


def open_db(path: str | Path | None = None) -> sqlite_utils.Database:
    """A new connection to the run log (WAL, busy_timeout), migrated; the first open in a process also
    marks runs whose owning process died as interrupted."""
    path = Path(path) if path is not None else get_settings().db_path
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=30)
    try:
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        db = sqlite_utils.Database(conn)
        key = str(path.resolve())
        with _prepared_lock:
            if key not in _prepared:
                migrations.apply(db)
                mark_interrupted(db)
                _prepared.add(key)
    except BaseException:  # a failed pragma or migration leaves no connection open
        conn.close()
        raise
    return db


@contextmanager
def connect(path: str | Path | None = None) -> Iterator[sqlite_utils.Database]:
    """`with connect() as db:` a connection to the run log that is closed when the block ends, even on error."""
    db = open_db(path)
    try:
        yield db
    finally:
        db.close()


def mark_interrupted(db: sqlite_utils.Database) -> int:
    """Mark `running` runs whose owner process is gone as `interrupted`; returns how many."""
    stale = [row["id"] for row in db.query("select id, owner_pid, owner_start from runs where status = 'running'")
             if not owner_alive(row["owner_pid"], row["owner_start"])]
    if stale:
        with db.conn:
            db.conn.executemany(
                "update runs set status = 'interrupted', finished_utc = ?, error = ? where id = ? and status = 'running'",
                [(utc_now(), "the process running it ended before it finished", i) for i in stale])
    return len(stale)


def _dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def save_template_version(db: sqlite_utils.Database, name: str, content_hash: str, content_yaml: str) -> None:
    """Keep the exact template text a run used, keyed by its content hash."""
    with db.conn:
        db["template_versions"].insert({"hash": content_hash, "name": name, "content_yaml": content_yaml,
                                        "created_utc": utc_now()}, ignore=True)


def start_run(db: sqlite_utils.Database, *, kind: str, template_name: str = "", template_hash: str = "",
              models: list[str] = (), strategies: list[str] = (), params: dict | None = None,
              options: dict | None = None, variables: dict | None = None, command: str = "") -> int:
    """Write the run row as `running` before any work; returns its id."""
    pid = os.getpid()
    with db.conn:
        cursor = db.conn.execute(
            "insert into runs (kind, status, created_utc, template_name, template_hash, models_json, "
            "strategies_json, params_json, options_json, variables_json, command, owner_pid, owner_start, visitor) "
            "values (?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (kind, utc_now(), template_name, template_hash, _dumps(list(models)), _dumps(list(strategies)),
             _dumps(params or {}), _dumps(options or {}), _dumps(variables or {}), command, pid,
             process_start(pid), visitors.current().key))
        return cursor.lastrowid


def finish_run(db: sqlite_utils.Database, run_id: int, status: str = "completed", error: str | None = None) -> None:
    if status not in RUN_STATUSES:
        raise ValueError(f"unknown run status {status!r}")
    row = db.execute("select created_utc, options_json from runs where id = ?", [run_id]).fetchone()
    options = json.loads(row[1] or "{}")
    # a resumed run counts the time it ran, not the pause: its earlier sessions plus this one since the resume
    since = options.get("resumed_utc") or row[0]
    started = datetime.fromisoformat(since.replace("Z", "+00:00"))
    duration_ms = (datetime.now(timezone.utc) - started).total_seconds() * 1000 + float(options.get("ran_ms") or 0)
    with db.conn:
        db.conn.execute("update runs set status = ?, finished_utc = ?, duration_ms = ?, error = ? where id = ?",
                        (status, utc_now(), round(duration_ms, 1), error, run_id))


def reopen_run(db: sqlite_utils.Database, run_id: int) -> None:
    """Take over a run that did not complete (to resume it): `running` again, owned by this process."""
    pid = os.getpid()
    ran = db.execute("select duration_ms from runs where id = ?", [run_id]).fetchone()
    update_run_options(db, run_id, ran_ms=float(ran[0] or 0) if ran else 0.0, resumed_utc=utc_now())
    with db.conn:
        db.conn.execute("update runs set status = 'running', finished_utc = null, error = null, owner_pid = ?, "
                        "owner_start = ? where id = ?", (pid, process_start(pid), run_id))


def update_run_options(db: sqlite_utils.Database, run_id: int, **values) -> None:
    """Add or replace keys of a run's options (what a run learns while it runs, e.g. why a search stopped)."""
    row = db.execute("select options_json from runs where id = ?", [run_id]).fetchone()
    options = {**json.loads(row[0] or "{}"), **values}
    with db.conn:
        db.conn.execute("update runs set options_json = ? where id = ?", (_dumps(options), run_id))


@contextmanager
def finishing(db: sqlite_utils.Database, run_id: int):
    """Finish the run when the block ends: completed, cancelled (CancelledError, which then carries run_id so a
    caller can offer to resume) or failed (any other error, re-raised)."""
    try:
        yield
    except CancelledError as exc:
        finish_run(db, run_id, "cancelled", "stopped by the user")
        exc.run_id = run_id
        raise
    except BaseException as exc:
        finish_run(db, run_id, "failed", f"{type(exc).__name__}: {exc}")
        raise
    finish_run(db, run_id, "completed")


GENERATION_FIELDS = ("template_name", "template_hash", "strategy", "model_spec", "model_revision", "variables_json",
                     "prompt", "params_json", "seed", "sample_index", "output", "answer", "prompt_tokens",
                     "completion_tokens", "latency_ms", "tokens_per_s", "finish_reason", "item_index", "k_shot",
                     "target", "strict_answer", "correct", "correct_strict", "score", "label_probs_json",
                     "token_source", "item_hash", "targets_json", "choices_json")


def log_generations(db: sqlite_utils.Database, run_id: int, rows: list[dict]) -> list[int]:
    """Insert generation rows for a run in one transaction; returns their ids."""
    now = utc_now()
    ids = []
    with db.conn:
        for row in rows:
            values = [run_id, now] + [row.get(f) for f in GENERATION_FIELDS]
            cursor = db.conn.execute(
                f"insert into generations (run_id, created_utc, {', '.join(GENERATION_FIELDS)}) "
                f"values ({', '.join('?' * (len(GENERATION_FIELDS) + 2))})", values)
            ids.append(cursor.lastrowid)
    return ids


def logged_item_indexes(db: sqlite_utils.Database, run_id: int, strategy: str, model: str, k: int,
                        seed: int, template_hash: str | None = None) -> set[int]:
    """The dataset items an evaluation run already logged for one condition (what resume skips); with
    template_hash, for that template version only (a prompt variant: a run with variants has one per variant)."""
    version = " and template_hash = ?" if template_hash is not None else ""
    return {r[0] for r in db.execute(
        "select distinct item_index from generations where run_id = ? and strategy = ? and model_spec = ? "
        f"and k_shot = ? and seed = ?{version}",
        [run_id, strategy, model, k, seed] + ([template_hash] if template_hash is not None else [])).fetchall()}


def run_template(db: sqlite_utils.Database, run: dict):
    """The exact template version a run used, from template_versions."""
    from prompt_lab.errors import PromptLabError
    from prompt_lab.prompts.templates import parse_template

    row = db.execute("select content_yaml from template_versions where hash = ?", [run["template_hash"]]).fetchone()
    if row is None:
        raise PromptLabError(f"run {run['id']}: its template version {run['template_hash']} is not in the log")
    return parse_template(row[0], source=f"template version {run['template_hash']}")


def get_run(db: sqlite_utils.Database, run_id: int) -> dict | None:
    """A run the current visitor may see (None for another visitor's run, as for a missing one)."""
    where, args = visible()
    rows = list(db.query(f"select * from runs where id = ? and {where}", [run_id] + args))
    return _decode(rows[0]) if rows else None


def resumable_run(db: sqlite_utils.Database, run_id: int, kind: str, noun: str) -> dict:
    """A run of this kind that the current visitor may resume (stopped, interrupted or failed), or the reason in
    words: missing, another kind, only shared with them through a link, or still running or completed."""
    from prompt_lab.errors import PromptLabError

    run = get_run(db, int(run_id))
    article = "an" if noun[0] in "aeiou" else "a"
    if run is None or run["kind"] != kind:
        raise PromptLabError(f"run {run_id} is not {article} {noun} run in the run log")
    if not visitors.can_see(run.get("visitor")):  # readable through a link, but not this visitor's to extend
        raise PromptLabError(f"run {run_id} was shared with you to read; only the visitor who started it can "
                             f"resume it (run the same {noun} as your own instead)")
    if run["status"] in ("running", "completed"):
        raise PromptLabError(f"run {run_id} is {run['status']}; only an interrupted, cancelled or failed {noun} "
                             "can be resumed")
    return run


def run_generations(db: sqlite_utils.Database, run_id: int) -> list[dict]:
    where, args = visible()
    return [_decode(r) for r in db.query(
        f"select * from generations where run_id = ? and run_id in (select id from runs where {where}) order by id",
        [run_id] + args)]


def list_runs(db: sqlite_utils.Database, *, limit: int = 50, kind: str | None = None,
              template: str | None = None, status: str | None = None) -> list[dict]:
    """Recent runs, newest first, with generation counts and mean latency (runs whose process died since are
    marked interrupted first, so a killed CLI run does not show as running)."""
    mark_interrupted(db)
    mine, args = visible("r")
    where = [mine]
    for column, value in (("kind", kind), ("template_name", template), ("status", status)):
        if value:
            where.append(f"r.{column} = ?")
            args.append(value)
    sql = ("select r.*, (select count(*) from generations g where g.run_id = r.id) as generations "
           f"from runs r where {' and '.join(where)} order by r.id desc limit ?")
    return [_decode(r) for r in db.query(sql, args + [int(limit)])]


def _decode(row: dict) -> dict:
    out = dict(row)
    for key in list(out):
        if key.endswith("_json") and isinstance(out[key], str):
            out[key[:-5]] = json.loads(out[key])
    return out
