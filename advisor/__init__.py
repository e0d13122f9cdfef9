"""advisor: an expert system for hyperparameter tuning."""

from advisor.act.task import Task

__version__ = "0.1.0"
__all__ = ["Task", "__version__"]
