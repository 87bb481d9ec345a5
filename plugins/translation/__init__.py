"""Machine translation (N->M): parallel text or JSONL in, sacreBLEU BLEU and chrF out."""
from .task import TranslationTask

__all__ = ["TranslationTask"]
