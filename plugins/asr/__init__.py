"""Speech recognition (N->M): audio manifests or spoken-digit folders in, jiwer WER and CER out."""
from .task import SpeechRecognitionTask

__all__ = ["SpeechRecognitionTask"]
