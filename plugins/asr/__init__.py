"""Speech recognition (N->M): audio manifests or spoken-digit folders in, jiwer WER and CER out.

The task class is imported on first use (PEP 562), so `python -m plugins.asr.digits` does not import
the builder twice (once through the task, once as __main__) and warn about it."""
from __future__ import annotations

__all__ = ["SpeechRecognitionTask"]


def __getattr__(name: str):
    if name == "SpeechRecognitionTask":
        from .task import SpeechRecognitionTask
        return SpeechRecognitionTask
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
