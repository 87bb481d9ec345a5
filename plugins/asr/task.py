"""Speech recognition task: audio manifests, spoken-digit folders and built connected digits in;
log-mel + SpecAugment + conv subsampling front-end; characters or BPE out; jiwer WER (primary) and CER.

Data specs (paths under the data root, or absolute):
- `dir/manifest.tsv` or `.jsonl`: audio path (relative to the manifest) and `text`;
- `dir/clips/`: a folder of `{digit}_{speaker}_{n}.wav` clips, one isolated word each;
- `digits:dir/clips`: connected digits built from that folder (see `digits.py`), cached under
  $S2S_CACHE_DIR (default ~/.cache/s2s)/digits; the pipeline's split name picks train/validation/test;
- any of these + `@train`, `@validation` or `@test` picks that part (see `data.py`).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

import datasets
import jiwer
import torch
from torch import Tensor, nn

from pipelines import Key, Scores, Settings, SourceSide, Task, UserError
from pipelines.hub import is_hub_spec

from .audio import AUDIO_SUFFIXES, AudioError
from .data import Row, normalized, read_clip_folder, read_manifest, select_part, split_part
from .digits import QUANTIZE_MODES, DigitsConfig, cached_build
from .features import NORMALIZE, AudioFrontend, SpecAugment, audio_features, one_thread, subsampled_length
from .text import normalize_text

DIGITS_PREFIX = "digits:"


class AudioSource(SourceSide):
    """Audio file paths -> cached log-mel features (T, n_mels); the front-end augments and subsamples them."""

    def __init__(self, settings: Settings):
        self.audio = settings["audio"]

    def encode(self, sources: Sequence[str]) -> list[Tensor]:
        with one_thread():
            return [audio_features(Path(s), self.audio) for s in sources]

    def length(self, item: Tensor) -> int:
        """Encoder steps after 4x subsampling, so token-budget batches count what the RNN sees."""
        return subsampled_length(item.size(0))

    def collate(self, items: list[Tensor]) -> tuple[Tensor, Tensor]:
        lengths = torch.tensor([x.size(0) for x in items])
        batch = items[0].new_zeros(len(items), int(lengths.max()), items[0].size(1))
        for i, x in enumerate(items):
            batch[i, : x.size(0)] = x
        return batch, lengths

    def frontend(self, model: dict[str, Any]) -> nn.Module:
        a = self.audio
        augment = SpecAugment(a["freq_masks"], a["freq_mask_width"], a["time_masks"], a["time_mask_width"],
                              a["time_mask_ratio"], a["warp"], a["sample_rate"])
        return AudioFrontend(a["n_mels"], a["conv_channels"], model["embedding"], model["dropout"], augment)


class SpeechRecognitionTask(Task):
    kind = "n2m"
    primary_metric = "wer"
    higher_is_better = False
    data_settings = {
        "audio_field": Key("", str, help="manifest column/field with the audio path ('' = audio, else path)"),
        "text_field": Key("text", str, help="manifest column/field with the transcript"),
        "skip_bad_audio": Key(False, bool, help="skip corrupt, truncated or empty audio files (and count them) "
                                               "instead of stopping with an error"),
        "holdout_every": Key(10, int, help="`spec@validation` / `@test` = every N-th row, `@train` = the rest"),
        "digits_seed": Key(0, int, help="connected digits (digits:FOLDER): seed of the build"),
        "digits_test_speaker": Key("", str, help="connected digits: held-out test speaker ('' = picked from the seed)"),
        "digits_train": Key(3000, int, help="connected digits: training utterances"),
        "digits_validation": Key(300, int, help="connected digits: validation utterances"),
        "digits_test": Key(500, int, help="connected digits: test utterances (unseen speaker)"),
        "digits_max": Key(7, int, help="connected digits: most digits per utterance"),
        "digits_noise": Key(0.0, float, help="connected digits: share of training clips given white noise at "
                                             "10-40 dB SNR (a new speaker's noisier channel)"),
        "digits_quantize": Key(0.0, float, help="connected digits: share of training clips requantised "
                                                "(data.digits_quantize_mode)"),
        "digits_quantize_mode": Key("full_scale", str, QUANTIZE_MODES,
                                    "connected digits: full_scale = 8 bits of full scale (with dither); peak = a random "
                                    "16-128 levels over each clip's own peak after a random DC offset, as an 8-bit "
                                    "recording of any loudness"),
        "digits_validation_speaker": Key("", str, help="connected digits: validation from this speaker alone, left out "
                                                       "of training ('' = every training speaker's takes 0-4)"),
        "digits_trim": Key(0.0, float, help="connected digits: share of training clips re-cut by a stricter silence "
                                            "trimmer (10-25 dB below the clip's peak), as another recording's would"),
        "digits_clip_speed": Key(0.0, float, help="connected digits: each training clip at its own speed (tempo and "
                                                  "pitch), a factor in [1 - x, 1 + x] (0 = off)"),
    }
    extra_settings = {"audio": {
        "sample_rate": Key(16000, int, help="audio is resampled to this rate (Hz) before features"),
        "n_mels": Key(80, int, help="log-mel bins (25 ms windows every 10 ms)"),
        "fmin": Key(0.0, float, help="lowest frequency of the mel filterbank (Hz)"),
        "fmax": Key(0.0, float, help="highest frequency of the mel filterbank (Hz; 0 = half the sample rate)"),
        "floor_db": Key(0.0, float, help="floor the log-mel features this many dB below the utterance's loudest bin, "
                                         "so any recording's noise floor reads alike (0 = off)"),
        "normalize": Key("bin", str, NORMALIZE, "per-utterance normalisation: bin = each bin to zero mean and unit "
                                                "variance; mean = each bin to zero mean, one variance for all bins; "
                                                "utterance = one mean and variance"),
        "warp": Key(0.0, float, help="VTLP: training spectra are warped by a random factor in [1 - warp, 1 + warp], "
                                     "standing in for unseen speakers' vocal tracts (0 = off)"),
        "freq_masks": Key(2, int, help="SpecAugment: frequency masks per utterance (training only)"),
        "freq_mask_width": Key(15, int, help="SpecAugment: widest frequency mask, in mel bins"),
        "time_masks": Key(2, int, help="SpecAugment: time masks per utterance"),
        "time_mask_width": Key(20, int, help="SpecAugment: widest time mask, in 10 ms frames"),
        "time_mask_ratio": Key(0.1, float, help="SpecAugment: a time mask covers at most this share of the utterance"),
        "conv_channels": Key(256, int, help="channels of the two stride-2 time convolutions (4x subsampling)"),
    }}

    def load(self, spec: str, split: str) -> datasets.Dataset:
        data = self.settings["data"]
        body, part = split_part(spec)
        if is_hub_spec(body):
            raise UserError(f"{spec}: the asr task reads manifests and clip folders, not hf: datasets; export the "
                            f"dataset's audio files and a TSV manifest (audio<TAB>text) and pass that")
        if body.startswith(DIGITS_PREFIX):
            built = cached_build(self.resolve(body[len(DIGITS_PREFIX):]), self._digits_config())
            manifest = built / f"{part or split}.tsv"
            if not manifest.exists():
                raise UserError(f"{spec}: the connected-digits build {built} has no {part or split} split "
                                f"(a folder of one speaker's clips builds only `test`)")
            rows = read_manifest(manifest, "audio", "text")
        else:
            path = self.resolve(body)
            rows = read_clip_folder(path) if path.is_dir() else read_manifest(path, data["audio_field"], data["text_field"])
            rows = select_part(rows, part, data["holdout_every"])
        return self._decoded(normalized(rows), spec)

    def _digits_config(self) -> DigitsConfig:
        d = self.settings["data"]
        return DigitsConfig(d["digits_seed"], d["digits_test_speaker"], d["digits_train"], d["digits_validation"],
                            d["digits_test"], d["digits_max"], self.settings["audio"]["sample_rate"],
                            noise=d["digits_noise"], quantize=d["digits_quantize"],
                            quantize_mode=d["digits_quantize_mode"], validation_speaker=d["digits_validation_speaker"],
                            trim=d["digits_trim"], clip_speed=d["digits_clip_speed"])

    def _decoded(self, rows: list[Row], spec: str) -> datasets.Dataset:
        """Decode every clip now (features are cached for training); bad files stop or are skipped and counted."""
        audio = self.settings["audio"]
        kept, bad = [], []
        for row in rows:
            try:
                with one_thread():
                    audio_features(row.audio, audio)
            except AudioError as err:
                message = f"{row.where}: {err}" if row.where else str(err)
                if not self.settings["data"]["skip_bad_audio"]:
                    raise AudioError(f"{message} (or set data.skip_bad_audio = true to skip such files)") from None
                bad.append(message)
                continue
            kept.append(row)
        if bad:
            print(f"warning: {spec}: skipped {len(bad)} bad audio file(s) of {len(rows)}; first: {bad[0]}",
                  file=sys.stderr)
        if not kept:
            raise UserError(f"{spec}: no usable audio clips")
        return datasets.Dataset.from_dict({"source": [str(r.audio) for r in kept], "target": [r.text for r in kept]})

    def source_side(self) -> SourceSide:
        return AudioSource(self.settings)

    def score(self, hypotheses: list[str], references: list[list[str]]) -> Scores:
        """WER and CER in percent (jiwer), both on text normalised by `text.normalize_text`."""
        hyps = [normalize_text(h) for h in hypotheses]
        refs = [normalize_text(r[0]) for r in references]
        words, chars = jiwer.process_words(refs, hyps), jiwer.process_characters(refs, hyps)
        return Scores({"wer": 100 * words.wer, "cer": 100 * chars.cer}, "wer",
                      "jiwer WER/CER (%) on normalised text (NFKC, lowercase, punctuation removed)",
                      {"substitutions": words.substitutions, "deletions": words.deletions,
                       "insertions": words.insertions, "reference_words": sum(len(r.split()) for r in refs)})

    def parse_inputs(self, inputs: Sequence[str]) -> list[str]:
        """Audio files (WAV/FLAC/OGG at any rate, any channels), or folders of them."""
        out: list[str] = []
        for item in inputs:
            path = Path(item).expanduser()
            if path.is_dir():
                found = sorted(p for p in path.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
                if not found:
                    raise UserError(f"{path}: folder holds no audio files ({', '.join(AUDIO_SUFFIXES)})")
                out.extend(str(p) for p in found)
            elif path.is_file():
                out.append(str(path))
            else:
                raise UserError(f"{item}: no such audio file; give paths to WAV/FLAC files")
        return out
