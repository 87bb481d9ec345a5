"""Summarization (N->M): JSONL documents and summaries in, ROUGE-1/2/L F1 out (ROUGE-L primary)."""
from .task import SummarizationTask

__all__ = ["SummarizationTask"]
