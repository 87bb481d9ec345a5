"""Audio front-end: log-mel features (computed once per clip, cached in memory), SpecAugment, and
convolutional subsampling (4x in time) that feeds the engine's RNN encoder.

Features: 25 ms Hann windows every 10 ms, `n_mels` mel bins between `fmin` and `fmax` Hz, log(mel + 1e-6),
optionally a floor `floor_db` below the utterance's loudest bin (a recording's noise floor, whatever it is,
then reads as the same flat floor), then per-utterance normalisation: `normalize` = "bin" (each bin to zero
mean and unit variance over the clip's frames, removing the recording's gain and channel colouring),
"mean" (each bin to zero mean, one variance over all bins: a band that holds only a steady noise floor
stays flat instead of having its small fluctuations scaled up to unit variance), or "utterance" (one mean
and one variance over all bins and frames).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
import torchaudio
from torch import Tensor, nn

from pipelines import UserError

from .audio import read_audio

_EPS = 1e-6


NORMALIZE = ("bin", "mean", "utterance")


class LogMel:
    """Waveform (N,) at `sample_rate` -> normalised log-mel frames (T, n_mels) (see the module docstring)."""

    def __init__(self, sample_rate: int, n_mels: int, fmin: float = 0.0, fmax: float = 0.0, normalize: str = "bin",
                 floor_db: float = 0.0):
        if normalize not in NORMALIZE:
            raise UserError(f"audio.normalize = {normalize!r}: choose one of {', '.join(NORMALIZE)}")
        top = fmax or sample_rate / 2
        if not 0.0 <= fmin < top <= sample_rate / 2 or floor_db < 0:
            raise UserError(f"audio.fmin = {fmin}, audio.fmax = {fmax}, audio.floor_db = {floor_db}: need "
                            f"0 <= fmin < fmax <= {sample_rate / 2:g} (fmax 0 = half the sample rate) and floor_db >= 0")
        win, self.hop = round(0.025 * sample_rate), round(0.010 * sample_rate)
        self.n_fft = max(512, 2 ** math.ceil(math.log2(win)))
        self.mel = torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=self.n_fft, win_length=win,
                                                        hop_length=self.hop, n_mels=n_mels, f_min=fmin, f_max=top)
        self.normalize, self.floor = normalize, floor_db * math.log(10.0) / 10.0   # dB -> natural-log power

    def __call__(self, wave: Tensor) -> Tensor:
        if wave.numel() < self.n_fft:   # the centred STFT's reflect padding needs at least n_fft/2 + 1 samples
            wave = torch.nn.functional.pad(wave, (0, self.n_fft - wave.numel()))
        x = torch.log(self.mel(wave) + _EPS).T
        if self.floor:
            x = x.clamp(min=float(x.max()) - self.floor)
        if self.normalize == "utterance":
            return (x - x.mean()) / (x.std(unbiased=False) + 1e-5)
        x = x - x.mean(0)
        if self.normalize == "mean":
            return x / (x.std(unbiased=False) + 1e-5)
        return x / (x.std(0, unbiased=False) + 1e-5)


_extractors: dict[tuple, LogMel] = {}
_cache: dict[tuple, Tensor] = {}


def clip_features(path: Path, sample_rate: int, n_mels: int, fmin: float = 0.0, fmax: float = 0.0,
                  normalize: str = "bin", floor_db: float = 0.0) -> Tensor:
    """Features of one audio file, computed once per process (keyed by path, size, mtime and settings)."""
    path = Path(path)
    stat = path.stat() if path.is_file() else None
    options = (sample_rate, n_mels, fmin, fmax, normalize, floor_db)
    key = (str(path.resolve()), stat and stat.st_size, stat and stat.st_mtime_ns, *options)
    if key not in _cache:
        if options not in _extractors:
            _extractors[options] = LogMel(*options)
        _cache[key] = _extractors[options](read_audio(path, sample_rate))
    return _cache[key]


def audio_features(path: Path, audio: dict) -> Tensor:
    """`clip_features` with a pipeline's `audio` settings: the one path training, scoring and predict share."""
    return clip_features(path, audio["sample_rate"], audio["n_mels"], audio["fmin"], audio["fmax"],
                         audio["normalize"], audio["floor_db"])


@contextmanager
def one_thread() -> Iterator[None]:
    """Per-clip feature work is too small to gain from threads, and on busy cores OpenMP's waiting
    threads make it about 10x slower; run it on one thread and restore the setting afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def subsampled_length(frames: int | Tensor) -> int | Tensor:
    """Frames after two stride-2 convolutions (kernel 3, padding 1): ceil(ceil(T / 2) / 2)."""
    return ((frames + 1) // 2 + 1) // 2


def _hz_to_mel(f: Tensor) -> Tensor:
    return 2595.0 * torch.log10(1.0 + f / 700.0)   # the HTK mel scale torchaudio's MelSpectrogram uses


def vtlp_positions(alpha: Tensor, n_mels: int, sample_rate: int) -> Tensor:
    """(B,) warp factors -> (B, n_mels) fractional mel-bin positions to read each bin from.

    Vocal tract length perturbation (Jaitly and Hinton, 2013): bin j, centred on f_j Hz, takes the
    energy the recording has at f_j / alpha, so alpha > 1 moves formants up as a shorter vocal tract
    would. Positions past the last bin are clamped (the band edge repeats)."""
    top = _hz_to_mel(torch.tensor(sample_rate / 2.0))
    centres = torch.linspace(0.0, float(top), n_mels + 2)[1:-1]
    hz = 700.0 * (10.0 ** (centres / 2595.0) - 1.0)
    source = _hz_to_mel(hz.unsqueeze(0) / alpha.unsqueeze(1))
    return (source / top * (n_mels + 1) - 1.0).clamp(0.0, n_mels - 1.0)


class SpecAugment(nn.Module):
    """Training-only augmentation: VTLP frequency warping, then frequency and time masking (Park et al., 2019).

    Each utterance's spectrum is warped by a factor drawn from [1 - warp, 1 + warp] (a new speaker's
    vocal tract, see `vtlp_positions`; `warp` = 0 is off), then gets `freq_masks` bands of up to
    `freq_width` bins and `time_masks` spans of up to `time_width` frames (never more than
    `time_ratio` of its length) set to 0, the features' mean.
    """

    def __init__(self, freq_masks: int, freq_width: int, time_masks: int, time_width: int, time_ratio: float,
                 warp: float = 0.0, sample_rate: int = 16000):
        super().__init__()
        self.freq_masks, self.freq_width = freq_masks, freq_width
        self.time_masks, self.time_width, self.time_ratio = time_masks, time_width, time_ratio
        self.warp, self.sample_rate = warp, sample_rate

    def warped(self, x: Tensor, alpha: Tensor) -> Tensor:
        """(B, T, bins) features warped by (B,) factors: linear interpolation between the two mel bins
        around each source position."""
        batch, frames, bins = x.shape
        position = vtlp_positions(alpha, bins, self.sample_rate).to(x.device)
        low = position.floor().long()
        high = (low + 1).clamp(max=bins - 1)
        share = (position - low).to(x.dtype).unsqueeze(1)
        gather = lambda index: x.gather(2, index.unsqueeze(1).expand(batch, frames, bins))
        return gather(low) * (1.0 - share) + gather(high) * share

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        if not self.training:
            return x
        x = self.warped(x, 1.0 + self.warp * (2.0 * torch.rand(x.size(0)) - 1.0)) if self.warp else x.clone()
        bins = x.size(2)
        for b, length in enumerate(lengths.tolist()):
            for _ in range(self.freq_masks):
                width = int(torch.randint(0, min(self.freq_width, bins) + 1, ()))
                start = int(torch.randint(0, bins - width + 1, ()))
                x[b, :, start: start + width] = 0.0
            limit = min(self.time_width, int(self.time_ratio * length))
            for _ in range(self.time_masks):
                width = int(torch.randint(0, limit + 1, ()))
                start = int(torch.randint(0, length - width + 1, ()))
                x[b, start: start + width] = 0.0
        return x


class AudioFrontend(nn.Module):
    """(B, T, n_mels) features -> SpecAugment (training only) -> 2 x [Conv1d over time (kernel 3, stride 2,
    mel bins as input channels) + tanh] -> linear projection: (B, ceil(T/4), output_size) and new lengths.

    tanh, not ReLU: on per-utterance-normalised (zero-mean) features, ReLU layers kept the CTC loss on
    its initial plateau far longer in our probes (24 connected-digit utterances, 300 updates: about 2.4
    nats per token with ReLU, 0.1-0.5 with tanh); 2-D convolutions with ReLU behaved the same.
    """

    def __init__(self, n_mels: int, channels: int, output_size: int, dropout: float, augment: SpecAugment):
        super().__init__()
        self.augment = augment
        self.conv1 = nn.Conv1d(n_mels, channels, 3, stride=2, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, 3, stride=2, padding=1)
        self.proj = nn.Linear(channels, output_size)
        self.dropout = nn.Dropout(dropout)
        self.output_size = output_size

    def forward(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.tanh(self.conv1(self.augment(features, lengths).transpose(1, 2)))
        # Zero the first layer's outputs past each utterance's end, so padding never leaks into valid frames.
        valid = torch.arange(x.size(2), device=x.device).unsqueeze(0) < ((lengths + 1) // 2).to(x.device).unsqueeze(1)
        x = torch.tanh(self.conv2(x * valid.unsqueeze(1).to(x.dtype)))
        return self.dropout(self.proj(x.transpose(1, 2))), subsampled_length(lengths)
