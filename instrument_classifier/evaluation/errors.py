"""The error ``evaluate`` reports as a message (exit status 2), not a traceback."""

class EvaluationError(Exception):
    """Bad input to ``evaluate`` (missing model, incompatible dataset, ...); the message names the path."""
