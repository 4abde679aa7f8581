"""The error ``train.py`` reports as a one-line message (exit code 2) instead of a traceback."""

__all__ = ["TrainingSetupError"]


class TrainingSetupError(ValueError):
    """Arguments, data and model do not fit together (e.g. a missing split or a taxonomy mismatch)."""
