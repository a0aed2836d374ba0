"""Short, human names for model specs, for chart legends and tables."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit


def short_model(spec: str) -> str:
    """A legend-sized model name: `openai:org/name@http://host:8000/v1` -> `name @ host:8000`, a folder or
    file path -> its last part, `<base>+<adapter dir>` -> `base + <job>/adapter`."""
    if spec.startswith("openai:"):
        model, _, where = spec[len("openai:"):].partition("@")
        return f"{Path(model).name or model} @ {urlsplit(where).netloc or where}"
    base, plus, adapter = spec.partition("+")
    name = Path(base).name or base
    return name + (f" + {Path(adapter).parent.name}/{Path(adapter).name}" if plus else "")
