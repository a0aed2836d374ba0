"""Model backends: specs resolve to a loaded backend shared by the whole process."""
from prompt_lab.models.base import Generation, GenerationParams, StreamEvent
from prompt_lab.models.registry import DEFAULT_SPEC, get_backend, resolve

__all__ = ["DEFAULT_SPEC", "Generation", "GenerationParams", "StreamEvent", "get_backend", "resolve"]
