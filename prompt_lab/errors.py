"""Exceptions the core raises for bad input; the CLI prints them and the UI shows them as plain messages."""


class PromptLabError(Exception):
    """Base class: the message is written for the user and names the problem."""


class TemplateError(PromptLabError):
    """A template that cannot be parsed, validated or rendered."""


class UnknownChoiceError(PromptLabError):
    """An unknown template, strategy or model; the message lists the valid choices."""


class ModelLoadError(PromptLabError):
    """A model spec that cannot be resolved or loaded; the message says what was tried."""


class CancelledError(PromptLabError):
    """Work stopped because the caller asked for it."""
