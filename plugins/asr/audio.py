"""Decoding audio files with soundfile (libsndfile): mono float32 at the pipeline's sample rate.

Corrupt, truncated and empty files raise `AudioError` naming the file, so a loader can
either stop with that message or skip the file and count it (`data.skip_bad_audio`).
"""
from __future__ import annotations

import re
from pathlib import Path

import soundfile as sf
import torch
import torchaudio.functional as AF

from pipelines import UserError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
# libsndfile logs a chunk whose declared size exceeds what the file holds as "data : 16000 (should be 7978)".
_SHORT_CHUNK = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_STREAMING_SIZES = (0, 0xFFFFFFFF, 0x7FFFFFFF)   # placeholders written by streaming encoders, not truncation


class AudioError(UserError):
    """An audio file that cannot be used: missing, undecodable, truncated or empty."""


def _truncation(extra_info: str) -> str:
    """libsndfile's own report of a data chunk cut short, as a phrase, or ''."""
    for declared, actual in _SHORT_CHUNK.findall(extra_info):
        if int(declared) > int(actual) and int(declared) not in _STREAMING_SIZES:
            return f"the header declares {declared} bytes of audio but the file holds {actual}"
    return ""


def read_audio(path: Path, sample_rate: int) -> torch.Tensor:
    """Samples (N,) in [-1, 1]: channels averaged to mono, resampled with torchaudio to `sample_rate`."""
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found")
    try:
        with sf.SoundFile(str(path)) as handle:
            truncated = _truncation(handle.extra_info)
            rate = handle.samplerate
            data = handle.read(dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, ValueError) as err:
        raise AudioError(f"{path}: cannot decode audio ({str(err).strip()}); give a WAV or FLAC file") from None
    if truncated:
        raise AudioError(f"{path}: truncated audio file ({truncated}); re-export or remove it")
    if data.shape[0] == 0:
        raise AudioError(f"{path}: empty audio clip (0 samples); remove it")
    wave = torch.from_numpy(data).mean(dim=1)
    if rate != sample_rate:
        wave = AF.resample(wave, rate, sample_rate)
    return wave


def write_audio(path: Path, wave: torch.Tensor, sample_rate: int) -> None:
    """16-bit PCM WAV (values clipped to [-1, 1])."""
    sf.write(str(path), wave.clamp(-1.0, 1.0).numpy(), sample_rate, subtype="PCM_16")
