"""Image captioning (1->N): a CNN front-end, captions decoded with or without attention over its grid; CIDEr and BLEU-4."""
from .task import CaptioningTask, ImageSource

__all__ = ["CaptioningTask", "ImageSource"]
