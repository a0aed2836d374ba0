"""Training checkpoints: which ones Trainer finished writing, and the step a resumed job continues from.

Trainer writes a checkpoint folder in place; the marker file written after its on_save event says it got to the
end of it, so a job killed mid-save resumes from the checkpoint before.
"""
from __future__ import annotations

from pathlib import Path

COMPLETE_MARKER = "prompt_lab_complete"


def mark_complete(checkpoint: Path, step: int) -> None:
    """Say a checkpoint folder is whole (after Trainer's on_save); a folder that is not there is left alone."""
    if checkpoint.is_dir():
        (checkpoint / COMPLETE_MARKER).write_text(str(step))


def last_complete_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint that Trainer finished writing (marked after its on_save event)."""
    done = [p for p in folder.glob("checkpoint-*") if (p / COMPLETE_MARKER).exists()]
    return max(done, key=checkpoint_number, default=None)


def checkpoint_number(checkpoint: Path) -> int:
    """The training step of a `checkpoint-<step>` folder."""
    return int(checkpoint.name.split("-")[1])


def resume_step(folder: Path) -> int:
    """The step training resumes from with the checkpoints in `folder`: the last complete one's, else 0."""
    checkpoint = last_complete_checkpoint(folder)
    return checkpoint_number(checkpoint) if checkpoint else 0
