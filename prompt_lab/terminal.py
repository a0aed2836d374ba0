"""What the CLI draws on a terminal: a progress bar for model loading and generation."""
from __future__ import annotations

import sys


class TerminalProgress:
    """A tqdm bar on stderr for model loading and generation (silent when stderr is not a terminal)."""

    def __init__(self) -> None:
        self.bar = None
        self.label = None

    def __call__(self, fraction: float, message: str) -> None:
        from tqdm import tqdm

        label = message.split(":")[0]
        if self.bar is None or label != self.label:
            self.close()
            self.bar = tqdm(total=100, desc=label, file=sys.stderr, leave=False, disable=None,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")
            self.label = label
        self.bar.n = int(fraction * 100)
        self.bar.set_postfix_str(message[len(label) + 1:].strip() if ":" in message else message, refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
