"""formnet: image restoration with FormResNet (formatted residual learning)."""

__version__ = "0.1.0"
