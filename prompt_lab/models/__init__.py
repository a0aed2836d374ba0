"""Model backends: specs resolve to a loaded backend shared by the whole process."""
from .base import Generation, GenerationParams, StreamEvent
from .registry import DEFAULT_SPEC, get_backend, resolve

__all__ = ["DEFAULT_SPEC", "Generation", "GenerationParams", "StreamEvent", "get_backend", "resolve"]
