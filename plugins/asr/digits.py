"""Connected-digits data built from isolated spoken-digit clips (Free Spoken Digit Dataset layout).

Clips are named `{digit}_{speaker}_{n}.wav`. One speaker (`test_speaker`, or one picked from the
seed) is held out for `test`; `train` and `validation` come from the other speakers, validation from
takes n < 5 and train from the rest, so no clip is shared between splits. An utterance strings 1 to
`max_digits` random clips of one speaker together with short random pauses (0.05-0.35 s between
digits, 0.1-0.3 s at either end) and a faint noise floor; a training utterance is also sped up or
slowed down by a random factor of 0.9-1.1 (tempo and pitch, as in Kaldi's speed perturbation).
Optionally (`trim`, `clip_speed`, off by default) a training clip is re-cut by a stricter silence
trimmer and/or given its own speed. Optionally (`noise`, `quantize`, off by default) each training clip
is also passed through a random recording channel before it is strung in: white noise at 10-40 dB SNR
and/or requantisation, because a new speaker's clips come from a new microphone and sound card (FSDD's
`nicolas` is 8-bit with a noise floor near -36 dBFS; the other four are clean 16-bit), and a model that
never heard noise inside a digit reads it as fricatives. Requantisation (`quantize_mode`) is either to 8 bits of full scale
("full_scale": steps of 1/128, with dither; a quiet speaker such as theo, peaks near 0.03, keeps only
a few levels) or relative to the clip's own peak ("peak": a random 16-128 levels across [-peak, peak],
no dither, after a random DC offset of up to 1.5 steps), which is what an 8-bit recording of any
loudness looks like (nicolas: about 52-62 levels per clip, DC about -0.9 step).
With `validation_speaker` set, validation comes from that speaker alone (all takes) and training from
the remaining speakers (all takes), so validation measures how well a model hears a voice it never
heard, as the test does.
Each is transcribed as the spoken words ("three one four").
Everything follows from the seed: the same folder and settings give byte-identical output.

Output folder: `train.tsv`, `validation.tsv`, `test.tsv` (columns `audio`, `text`, `speaker`; audio
paths relative to the folder), WAV files under `wav/`, and `build.json` (the settings used). A folder
of a single speaker's clips (your own recordings) becomes a `test` split only.

    python -m plugins.asr.digits SRC_DIR OUT_DIR --seed 0 [--test-speaker NAME]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torchaudio.functional as AF

from pipelines import UserError

from .audio import AUDIO_SUFFIXES, read_audio, write_audio
from .features import one_thread
from .text import label_text

VERSION = 2
CLIP_NAME = re.compile(r"^(?P<label>[^_]+)_(?P<speaker>[^_]+)_(?P<n>\d+)$")
NOISE_LEVEL = 3e-4        # standard deviation of the noise floor (full scale = 1)
SPEEDS = (0.9, 0.95, 1.0, 1.05, 1.1)   # speed perturbation factors of training utterances
CHANNEL_SNR = (10.0, 40.0)  # dB range of the white noise added to a training clip (`noise`)
QUANTIZE_LEVELS = 128       # `quantize`, full_scale: 8-bit linear PCM, steps of 1/128 of full scale
PEAK_LEVELS = (16, 128)     # `quantize`, peak: levels across the clip's own [-peak, peak]
PEAK_DC_STEPS = 1.5         # `quantize`, peak: DC offset up to this many quantisation steps either way
QUANTIZE_MODES = ("full_scale", "peak")
TRIM_DB = (10.0, 25.0)      # `trim`: a clip is re-cut where it is this many dB below its loudest 10 ms


@dataclass(frozen=True)
class DigitsConfig:
    seed: int = 0
    test_speaker: str = ""         # "" = picked from the seed
    train: int = 3000              # utterances per split
    validation: int = 300
    test: int = 500
    max_digits: int = 7
    sample_rate: int = 8000
    speed_perturb: bool = True     # train only: tempo and pitch x 0.9-1.1, a cheap stand-in for more speakers
    noise: float = 0.0             # train only: share of clips given white noise at 10-40 dB SNR (a noisier channel)
    quantize: float = 0.0          # train only: share of clips requantised (a cheaper sound card)
    quantize_mode: str = "full_scale"   # full_scale: 8 bits of full scale; peak: 16-128 levels over the clip's peak
    validation_speaker: str = ""   # "" = validation from every non-test speaker's takes 0-4; else that speaker alone
    trim: float = 0.0              # train only: share of clips re-cut by a stricter silence trimmer
    clip_speed: float = 0.0        # train only: each clip's own speed factor in [1 - clip_speed, 1 + clip_speed]


@dataclass(frozen=True)
class Clip:
    path: Path
    label: str
    speaker: str
    take: int


def scan_clips(folder: Path) -> list[Clip]:
    """Every `{label}_{speaker}_{n}` audio file of a folder, sorted by name."""
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder of spoken-digit clips; check the path (relative to the data root)")
    clips = []
    for path in sorted(folder.iterdir()):
        match = CLIP_NAME.match(path.stem)
        if path.suffix.lower() in AUDIO_SUFFIXES and match:
            clips.append(Clip(path, match["label"], match["speaker"], int(match["n"])))
    if not clips:
        raise UserError(f"{folder}: no clips named {{label}}_{{speaker}}_{{n}}.wav (e.g. 3_alice_0.wav)")
    return clips


def pick_test_speaker(speakers: list[str], config: DigitsConfig) -> str:
    if config.test_speaker:
        if config.test_speaker not in speakers:
            raise UserError(f"test speaker {config.test_speaker!r} has no clips; speakers: {', '.join(speakers)}")
        return config.test_speaker
    return random.Random(config.seed).choice(sorted(speakers))


def _pools(clips: list[Clip], test_speaker: str, validation_speaker: str = "") -> dict[str, dict[str, list[Clip]]]:
    """split -> speaker -> clips."""
    others = [c for c in clips if c.speaker != test_speaker]
    if validation_speaker:
        speakers = sorted({c.speaker for c in others})
        if validation_speaker not in speakers or len(speakers) < 2:
            raise UserError(f"validation speaker {validation_speaker!r}: must be one of the training speakers "
                            f"({', '.join(speakers)}) and leave at least one other for training")
        chosen = {"train": [c for c in others if c.speaker != validation_speaker],
                  "validation": [c for c in others if c.speaker == validation_speaker]}
    else:
        chosen = {"train": [c for c in others if c.take >= 5], "validation": [c for c in others if c.take < 5]}
    chosen["test"] = [c for c in clips if c.speaker == test_speaker]
    pools: dict[str, dict[str, list[Clip]]] = {}
    for split, members in chosen.items():
        for clip in members:
            pools.setdefault(split, {}).setdefault(clip.speaker, []).append(clip)
    return pools


def _silence(rng: random.Random, low: float, high: float, rate: int) -> torch.Tensor:
    return torch.zeros(int(rng.uniform(low, high) * rate))


def channel(wave: torch.Tensor, rng: random.Random, noise: float, quantize: float,
            mode: str = "full_scale") -> torch.Tensor:
    """One clip through a random recording channel: with probability `noise` white noise at an SNR drawn
    from CHANNEL_SNR, then with probability `quantize` requantisation: `mode` full_scale, 8 bits of full
    scale with a little dither (so a quiet clip keeps some detail); peak, a random number of levels in
    PEAK_LEVELS across the clip's own [-peak, peak] after a DC offset of up to PEAK_DC_STEPS steps, no
    dither. Draws nothing from `rng` for a probability of 0, so builds without the option stay
    byte-identical."""
    if mode not in QUANTIZE_MODES:
        raise UserError(f"quantize mode {mode!r}: choose one of {', '.join(QUANTIZE_MODES)}")
    if noise and rng.random() < noise:
        snr = rng.uniform(*CHANNEL_SNR)
        gen = torch.Generator().manual_seed(rng.getrandbits(62))
        wave = wave + wave.pow(2).mean().sqrt() * 10 ** (-snr / 20) * torch.randn(wave.numel(), generator=gen)
    if quantize and rng.random() < quantize:
        if mode == "peak":
            levels = rng.randint(*PEAK_LEVELS)
            step = 2.0 * max(float(wave.abs().max()), 1e-4) / levels
            offset = rng.uniform(-PEAK_DC_STEPS, PEAK_DC_STEPS) * step
            return torch.round((wave + offset) / step) * step
        gen = torch.Generator().manual_seed(rng.getrandbits(62))
        dither = (torch.rand(wave.numel(), generator=gen) - 0.5) / QUANTIZE_LEVELS
        wave = torch.round((wave + dither) * QUANTIZE_LEVELS) / QUANTIZE_LEVELS
    return wave


def recut(wave: torch.Tensor, rng: random.Random, share: float, rate: int) -> torch.Tensor:
    """With probability `share`, cut a clip to its first and last 10 ms frame within a threshold drawn from
    TRIM_DB of its loudest frame: FSDD's clips were trimmed of silence by an energy threshold, and a
    stricter one (or a quieter recording) clips weak onsets and codas, such as the /s/ of "six" or the
    /f/ of "four". Draws nothing from `rng` for a share of 0."""
    if not share or rng.random() >= share:
        return wave
    threshold = rng.uniform(*TRIM_DB)
    frame = rate // 100
    if wave.numel() < 2 * frame:
        return wave
    energy = wave[: wave.numel() // frame * frame].view(-1, frame).pow(2).mean(1) + 1e-12
    loud = (10.0 * torch.log10(energy / energy.max()) > -threshold).nonzero().flatten()
    return wave[int(loud[0]) * frame: (int(loud[-1]) + 1) * frame]


def sped(wave: torch.Tensor, rng: random.Random, spread: float, rate: int) -> torch.Tensor:
    """A clip at its own speed (tempo and pitch), a factor drawn in [1 - spread, 1 + spread] in steps of
    0.01 (so the resampling ratio stays a small fraction). Draws nothing from `rng` for a spread of 0."""
    if not spread:
        return wave
    factor = round(rng.uniform(1.0 - spread, 1.0 + spread), 2)
    return wave if factor == 1.0 else AF.resample(wave, round(rate * factor), rate)


def _utterance(pool: dict[str, list[Clip]], rng: random.Random, config: DigitsConfig,
               audio: dict[Path, torch.Tensor], perturb: bool, channel_rng: random.Random) -> tuple[torch.Tensor, str, str]:
    """One speaker's digits strung together: (waveform, transcript, speaker)."""
    rate = config.sample_rate
    speaker = rng.choice(sorted(pool))
    picks = [rng.choice(pool[speaker]) for _ in range(rng.randint(1, config.max_digits))]
    parts = [_silence(rng, 0.1, 0.3, rate)]
    for i, clip in enumerate(picks):
        if clip.path not in audio:
            audio[clip.path] = read_audio(clip.path, rate)
        wave = audio[clip.path]
        if perturb:
            wave = sped(recut(wave, channel_rng, config.trim, rate), channel_rng, config.clip_speed, rate)
            wave = channel(wave, channel_rng, config.noise, config.quantize, config.quantize_mode)
        parts += ([_silence(rng, 0.05, 0.35, rate)] if i else []) + [wave]
    parts.append(_silence(rng, 0.1, 0.3, rate))
    wave = torch.cat(parts)
    speed = rng.choice(SPEEDS) if perturb and config.speed_perturb else 1.0
    if speed != 1.0:   # read as if sampled at rate x speed: shorter and higher (Kaldi-style speed perturbation)
        wave = AF.resample(wave, round(rate * speed), rate)
    noise = torch.randn(wave.numel(), generator=torch.Generator().manual_seed(rng.getrandbits(62)))
    return wave + NOISE_LEVEL * noise, " ".join(label_text(c.label) for c in picks), speaker


def build(source: Path, out: Path, config: DigitsConfig) -> dict:
    """Write the connected-digits splits of `source` into `out` (replacing it); returns build.json's content."""
    with one_thread():
        return _build(source, out, config)


def _build(source: Path, out: Path, config: DigitsConfig) -> dict:
    clips = scan_clips(source)
    speakers = sorted({c.speaker for c in clips})
    test_speaker = speakers[0] if len(speakers) == 1 else pick_test_speaker(speakers, config)
    pools = _pools(clips, test_speaker, config.validation_speaker if len(speakers) > 1 else "")
    rng = random.Random(config.seed)
    channel_rng = random.Random(f"{config.seed}:channel")   # its own stream: the channel options never change which digits are drawn
    audio: dict[Path, torch.Tensor] = {}
    tmp = Path(tempfile.mkdtemp(prefix=".digits-", dir=out.parent))
    try:
        (tmp / "wav").mkdir()
        counts = {}
        for split in ("train", "validation", "test"):
            wanted = getattr(config, split)
            if split not in pools or not wanted:
                continue
            lines = ["audio\ttext\tspeaker"]
            for i in range(wanted):
                wave, text, speaker = _utterance(pools[split], rng, config, audio, split == "train", channel_rng)
                name = f"wav/{split}_{i:05d}.wav"
                write_audio(tmp / name, wave, config.sample_rate)
                lines.append(f"{name}\t{text}\t{speaker}")
            (tmp / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
            counts[split] = wanted
        info = {"version": VERSION, "source": str(source.resolve()), "config": asdict(config),
                "speakers": speakers, "test_speaker": test_speaker, "utterances": counts}
        (tmp / "build.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return info


def cache_root() -> Path:
    return Path(os.environ.get("S2S_CACHE_DIR", "~/.cache/s2s")).expanduser()


def cached_build(source: Path, config: DigitsConfig) -> Path:
    """The built folder for (source, config), built on first use under $S2S_CACHE_DIR (~/.cache/s2s)/digits."""
    listing = "\n".join(f"{c.path.name}:{c.path.stat().st_size}" for c in scan_clips(source))
    key = json.dumps([VERSION, str(source.resolve()), asdict(config), listing])
    out = cache_root() / "digits" / f"{source.name}-seed{config.seed}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"
    if not (out / "build.json").exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        build(source, out, config)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m plugins.asr.digits", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="folder of {digit}_{speaker}_{n}.wav clips")
    parser.add_argument("out", type=Path, help="output folder (replaced if it exists)")
    parser.add_argument("--seed", type=int, default=DigitsConfig.seed)
    parser.add_argument("--test-speaker", default="", help="held-out speaker (default: picked from the seed)")
    for split in ("train", "validation", "test"):
        parser.add_argument(f"--{split}", type=int, default=getattr(DigitsConfig, split), help=f"{split} utterances")
    parser.add_argument("--max-digits", type=int, default=DigitsConfig.max_digits)
    parser.add_argument("--sample-rate", type=int, default=DigitsConfig.sample_rate)
    parser.add_argument("--no-speed-perturb", action="store_true", help="keep training utterances at speed 1.0")
    parser.add_argument("--noise", type=float, default=DigitsConfig.noise,
                        help="share of training clips given white noise at 10-40 dB SNR")
    parser.add_argument("--quantize", type=float, default=DigitsConfig.quantize,
                        help="share of training clips requantised")
    parser.add_argument("--quantize-mode", choices=QUANTIZE_MODES, default=DigitsConfig.quantize_mode,
                        help="full_scale: 8 bits of full scale; peak: 16-128 levels over each clip's own peak, DC offset")
    parser.add_argument("--trim", type=float, default=DigitsConfig.trim,
                        help="share of training clips re-cut by a stricter silence trimmer (10-25 dB below the peak)")
    parser.add_argument("--clip-speed", type=float, default=DigitsConfig.clip_speed,
                        help="training clips each at their own speed, a factor in [1 - x, 1 + x]")
    parser.add_argument("--validation-speaker", default="",
                        help="validation from this speaker alone, who is then left out of training")
    args = parser.parse_args(argv)
    config = DigitsConfig(args.seed, args.test_speaker, args.train, args.validation, args.test,
                          args.max_digits, args.sample_rate, not args.no_speed_perturb, args.noise, args.quantize,
                          args.quantize_mode, args.validation_speaker, args.trim, args.clip_speed)
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        info = build(args.source, args.out, config)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{args.out}: {info['utterances']} utterances; test speaker {info['test_speaker']} "
          f"(evaluate with: s2s evaluate RUN --data test={args.out / 'test.tsv'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
