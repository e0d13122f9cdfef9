"""advisor: an expert system for hyperparameter tuning."""

__version__ = "0.1.0"
__all__ = ["__version__"]
