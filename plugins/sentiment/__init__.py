"""Sentiment classification (N->1): TSV/CSV/JSONL or `hf:` data in, accuracy and macro-F1 out."""
from .task import SentimentTask

__all__ = ["SentimentTask"]
