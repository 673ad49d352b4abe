"""interp: mechanistic interpretability for video diffusion transformers."""

__version__ = "0.1.0"
