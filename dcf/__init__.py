"""Dense Correlation Fields for video action recognition."""

from dcf.checkpoint import load_checkpoint
from dcf.models import build_model, list_models
from dcf.ops import correlation

__version__ = "0.1.0"
__all__ = ["__version__", "build_model", "correlation", "list_models", "load_checkpoint"]
