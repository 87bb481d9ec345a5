"""Dialogue reply generation (N->M): the conversation so far in, the next reply out."""
from .task import DialogueTask

__all__ = ["DialogueTask"]
