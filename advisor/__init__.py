"""advisor: an expert system for hyperparameter tuning."""

__version__ = "0.1.0"
__all__ = ["Task", "__version__"]


def __getattr__(name: str):  # `advisor.Task` without loading the task machinery at start-up
    if name == "Task":
        from advisor.act.task import Task

        return Task
    raise AttributeError(f"module 'advisor' has no attribute {name!r}")
