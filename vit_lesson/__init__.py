"""vit_lesson: a Vision Transformer built from scratch, one component at a time."""

__version__ = "0.1.0"
