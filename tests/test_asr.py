"""Speech recognition plugin: loaders, the normalisation rule, features, SpecAugment, subsampling, the
connected-digits builder, joint CTC, the demo through the real CLI, and bad audio input."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import DATA, assert_user_error, run_cli
from pipelines import UserError
from pipelines.checkpoint import read_checkpoint
from pipelines.ctc import best_path, joint_loss, sequence_log_probs
from pipelines.inference import ctc_rescore
from pipelines.model import Seq2Seq
from pipelines.registry import discover_tasks, get_task_class
from pipelines.settings import CORE_SCHEMA
from pipelines.loss import sequence_loss
from pipelines.workflows import resolve_pipeline
from plugins.asr.audio import read_audio
from plugins.asr.digits import CHANNEL_SNR, PEAK_DC_STEPS, PEAK_LEVELS, TRIM_DB, DigitsConfig, build, channel, recut, sped
from plugins.asr.digits import main as digits_main
from plugins.asr.features import AudioFrontend, LogMel, SpecAugment, clip_features, subsampled_length
from plugins.asr.text import label_text, normalize_text

FSDD = DATA / "asr" / "fsdd" / "recordings"


def tone(seconds: float, rate: int, freq: float = 440.0, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A sine with a little noise: (samples,) or (samples, channels)."""
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * math.pi * freq * t) + 0.01 * np.random.default_rng(seed).standard_normal(t.size)
    return wave.astype("float32") if channels == 1 else np.stack([wave] * channels, axis=1).astype("float32")


def wav(path: Path, seconds: float = 0.5, rate: int = 16000, channels: int = 1, freq: float = 440.0) -> Path:
    sf.write(str(path), tone(seconds, rate, freq, channels), rate, subtype="PCM_16")
    return path


def asr_task(*overrides: str):
    settings = resolve_pipeline("asr-demo", overrides)
    return get_task_class("asr", discover_tasks())(settings, DATA)


def model_settings(**overrides) -> dict:
    model = {k: v.default for k, v in CORE_SCHEMA["model"].items()}
    model.update(embedding=16, hidden=16, dropout=0.0, **overrides)
    return model


def frontend(channels: int = 4, n_mels: int = 80) -> AudioFrontend:
    return AudioFrontend(n_mels, channels, 16, 0.0, SpecAugment(2, 10, 2, 10, 0.2))


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("S2S_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def fsdd_subset(tmp_path, data_root) -> Path:
    """60 FSDD clips: three speakers x ten digits x takes 0 and 5 (links to the shared files)."""
    folder = tmp_path / "clips"
    folder.mkdir()
    for speaker in ("george", "lucas", "theo"):
        for digit in range(10):
            for take in (0, 5):
                name = f"{digit}_{speaker}_{take}.wav"
                (folder / name).symlink_to(FSDD / name)
    return folder


# -- normalisation and loaders ---------------------------------------------------------------------------------
def test_normalisation_rule():
    assert normalize_text("Please call Stella.") == "please call stella"
    assert normalize_text("  Six spoons, five thick slabs -- and a well-known \u201cBob\u201d!  ") == \
        "six spoons five thick slabs and a well known bob"
    assert normalize_text("Don\u2019t say 'maybe'?") == "don't say maybe"
    assert normalize_text("ÉCOLE No. 5") == "école no 5"
    assert normalize_text(normalize_text("It's A-OK.")) == normalize_text("It's A-OK.") == "it's a ok"
    assert label_text("3") == "three" and label_text("31") == "three one" and label_text("Yes") == "yes"


def test_scoring_uses_the_same_rule(data_root):
    task = asr_task()
    scores = task.score(["Three, one... FOUR!", "nine"], [["three one four"], ["nine five"]])
    assert scores.primary == "wer"
    assert scores.values["wer"] == pytest.approx(100 * 1 / 5)       # one deletion in five reference words
    assert scores.values["cer"] == pytest.approx(100 * 5 / (14 + 9))  # " five" missing: 5 of 23 characters
    assert scores.extra["deletions"] == 1


def test_tsv_and_jsonl_manifests_load_the_same_rows(tmp_path, data_root):
    (tmp_path / "audio").mkdir()
    a, b = wav(tmp_path / "audio" / "a.wav"), wav(tmp_path / "audio" / "b.wav", 0.3, freq=220)
    (tmp_path / "m.tsv").write_text("id\tpath\ttext\n1\taudio/a.wav\tHello, World!\n2\taudio/b.wav\tSecond one.\n")
    (tmp_path / "m.jsonl").write_text(json.dumps({"audio": "audio/a.wav", "text": "Hello, World!"}) + "\n\n"
                                      + json.dumps({"audio": str(b), "text": "Second one."}) + "\n")
    task = asr_task()
    tsv, jsonl = task.load(str(tmp_path / "m.tsv"), "test"), task.load(str(tmp_path / "m.jsonl"), "test")
    assert tsv["target"] == jsonl["target"] == ["hello world", "second one"]
    assert [Path(p).resolve() for p in tsv["source"]] == [Path(p).resolve() for p in jsonl["source"]] == [a, b]


def test_manifest_parts_hold_out_every_nth_row(tmp_path, data_root):
    clip = wav(tmp_path / "a.wav", 0.2)
    (tmp_path / "m.tsv").write_text("audio\ttext\n" + "".join(f"{clip.name}\tword {i}\n" for i in range(7)))
    task = asr_task("data.holdout_every=3")
    train, held = task.load(f"{tmp_path}/m.tsv@train", "train"), task.load(f"{tmp_path}/m.tsv@validation", "x")
    assert held["target"] == ["word 2", "word 5"]
    assert train["target"] == ["word 0", "word 1", "word 3", "word 4", "word 6"]


def test_digit_folder_loader(tmp_path, data_root):
    for name in ("3_alice_0.wav", "7_bob_1.wav", "notes.txt"):
        wav(tmp_path / name, 0.3) if name.endswith(".wav") else (tmp_path / name).write_text("x")
    data = asr_task().load(str(tmp_path), "test")
    assert data["target"] == ["three", "seven"]


# -- features ------------------------------------------------------------------------------------------------------
def test_log_mel_shape_and_per_utterance_normalisation(tmp_path):
    path = wav(tmp_path / "a.wav", 1.0, 16000)
    feats = clip_features(path, 16000, 80)
    assert feats.shape == (101, 80)                           # 10 ms hop, centred frames: 1 + 16000 / 160
    assert torch.allclose(feats.mean(0), torch.zeros(80), atol=1e-4)
    assert torch.allclose(feats.std(0, unbiased=False)[10:40], torch.ones(30), atol=1e-3)
    assert clip_features(path, 16000, 80) is feats             # computed once, then cached
    short = LogMel(8000, 80)(torch.randn(100))                   # shorter than one window: zero-padded, still frames
    assert short.shape[0] >= 1 and short.shape[1] == 80 and torch.isfinite(short).all()


def test_stereo_44k_is_mixed_down_and_resampled(tmp_path):
    stereo = wav(tmp_path / "stereo.wav", 0.5, 44100, channels=2)
    wave = read_audio(stereo, 16000)
    assert wave.dim() == 1 and abs(wave.numel() - 8000) <= 2
    mono = read_audio(wav(tmp_path / "mono.wav", 0.5, 16000), 16000)
    assert torch.corrcoef(torch.stack([wave[100:7800], mono[100:7800]]))[0, 1] > 0.99   # the same tone


def test_front_end_band_floor_and_normalisation_options(tmp_path):
    """fmax drops the band above it (a 3 kHz tone is invisible to a 0-2 kHz filterbank), floor_db limits the
    log range below the loudest bin, and the three normalisations hold their own invariants."""
    rate = 8000
    t = torch.arange(4000) / rate
    low, high = 0.3 * torch.sin(2 * math.pi * 500 * t), 0.3 * torch.sin(2 * math.pi * 3000 * t)
    banded, full = LogMel(rate, 40, fmax=2000.0), LogMel(rate, 40)
    assert float(banded.mel.mel_scale.fb[round(2100 / rate * banded.n_fft):].abs().sum()) == 0.0
    added = lambda extractor: float(extractor.mel(low + high).sum() / extractor.mel(low).sum())
    assert added(banded) < 1.01 and added(full) > 1.5                     # the 3 kHz tone is outside 0-2 kHz
    low = torch.from_numpy(tone(0.5, rate, 500.0))
    quiet = torch.cat([torch.zeros(2000) + 1e-5 * torch.randn(2000), low])
    floored = LogMel(rate, 40, floor_db=30.0, normalize="utterance")
    plain = LogMel(rate, 40, normalize="utterance")
    x = floored(quiet)
    at_floor = lambda x: float((x <= x.min() + 1e-4).float().mean())
    assert torch.allclose(x[:15], x.min().expand(15, 40)) and at_floor(x) > 0.3 > at_floor(plain(quiet))
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std(unbiased=False)) - 1) < 1e-3
    m = LogMel(rate, 40, normalize="mean")(quiet)
    assert torch.allclose(m.mean(0), torch.zeros(40), atol=1e-4) and abs(float(m.std(unbiased=False)) - 1) < 1e-3
    b = LogMel(rate, 40)(quiet)
    assert torch.allclose(b.std(0, unbiased=False)[5:30], torch.ones(25), atol=1e-3)
    path = wav(tmp_path / "a.wav", 0.5, rate)
    assert not torch.equal(clip_features(path, rate, 40), clip_features(path, rate, 40, fmax=2000.0))  # cached apart
    with pytest.raises(UserError, match="audio.fmin"):
        LogMel(rate, 40, fmax=5000.0)
    with pytest.raises(UserError, match="audio.normalize"):
        LogMel(rate, 40, normalize="global")


def test_spec_augment_only_in_training():
    torch.manual_seed(0)
    augment = SpecAugment(2, 10, 2, 10, 0.2)
    x, lengths = torch.randn(3, 60, 80) + 5.0, torch.tensor([60, 40, 20])
    augment.eval()
    assert torch.equal(augment(x, lengths), x)
    augment.train()
    y = augment(x, lengths)
    assert not torch.equal(y, x) and torch.equal(x, x.clone())                    # masks a copy
    zeroed_frames = (y == 0).all(dim=2)
    assert zeroed_frames.any() and (y == 0).all(dim=1).any()                     # whole frames and whole bins
    assert not zeroed_frames[1, 40:].any() and not zeroed_frames[2, 20:].any()    # time masks stay within the clip
    front = frontend()
    front.eval()
    assert torch.equal(front(x, lengths)[0], front(x, lengths)[0])


def test_vtlp_moves_a_tone_as_a_vocal_tract_would(tmp_path):
    """Warping by alpha > 1 raises a 1 kHz tone's peak bin, alpha < 1 lowers it, alpha = 1 changes nothing."""
    tone = clip_features(wav(tmp_path / "tone.wav", 0.5, 8000, freq=1000.0), 8000, 80).unsqueeze(0)
    augment = SpecAugment(0, 0, 0, 0, 0.1, warp=0.2, sample_rate=8000)
    peak = lambda x: int(x[0].mean(0).argmax())
    assert torch.allclose(augment.warped(tone, torch.ones(1)), tone, atol=1e-3)   # float round-off of mel(hz(m))
    assert peak(augment.warped(tone, torch.tensor([1.15]))) > peak(tone) + 2
    assert peak(augment.warped(tone, torch.tensor([0.85]))) < peak(tone) - 2
    torch.manual_seed(0)
    warped = augment.train()(tone, torch.tensor([tone.size(1)]))
    assert warped.shape == tone.shape and not torch.equal(warped, tone)
    assert warped.min() >= tone.min() - 1e-5 and warped.max() <= tone.max() + 1e-5   # interpolation: no new extremes


@pytest.mark.parametrize("frames", [1, 2, 3, 4, 5, 8, 37, 100])
def test_conv_subsampling_lengths(frames):
    front = frontend()
    out, lengths = front(torch.randn(1, frames, 80), torch.tensor([frames]))
    assert out.shape == (1, math.ceil(frames / 4), 16) and lengths.tolist() == [math.ceil(frames / 4)]
    assert subsampled_length(frames) == math.ceil(frames / 4)


def test_subsampling_ignores_batch_padding():
    torch.manual_seed(0)
    front = frontend()
    front.eval()
    long, short = torch.randn(50, 80), torch.randn(21, 80)
    batch = torch.zeros(2, 50, 80)
    batch[0], batch[1, :21] = long, short
    out, lengths = front(batch, torch.tensor([50, 21]))
    alone, _ = front(short.unsqueeze(0), torch.tensor([21]))
    assert lengths.tolist() == [13, 6]
    assert torch.allclose(out[1, :6], alone[0], atol=1e-5)


# -- connected digits ----------------------------------------------------------------------------------------------
def test_digits_builder_is_deterministic_and_holds_out_a_speaker(tmp_path, fsdd_subset):
    config = DigitsConfig(seed=3, train=12, validation=4, test=5, max_digits=4)
    first = build(fsdd_subset, tmp_path / "one", config)
    build(fsdd_subset, tmp_path / "two", config)
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*") if p.is_file())
    assert len(files) == 12 + 4 + 5 + 4
    for name in files:
        if name.name != "build.json":
            assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    held = first["test_speaker"]
    rows = {split: [l.split("\t") for l in (tmp_path / "one" / f"{split}.tsv").read_text().splitlines()[1:]]
            for split in ("train", "validation", "test")}
    assert {r[2] for r in rows["test"]} == {held}
    assert held not in {r[2] for split in ("train", "validation") for r in rows[split]}
    for audio, text, _ in rows["train"]:
        words = text.split()
        assert 1 <= len(words) <= 4 and set(words) <= {label_text(str(d)) for d in range(10)}
        assert sf.info(str(tmp_path / "one" / audio)).samplerate == 8000
    other = build(fsdd_subset, tmp_path / "three", DigitsConfig(seed=4, train=12, validation=4, test=5))
    assert (tmp_path / "three" / "train.tsv").read_text() != (tmp_path / "one" / "train.tsv").read_text() \
        or other["test_speaker"] != held


def test_channel_perturbation_adds_noise_at_the_drawn_snr_and_requantises_to_8_bits():
    import random
    clean = torch.from_numpy(tone(0.5, 8000))
    assert channel(clean, random.Random(0), 0.0, 0.0) is clean        # off: the clip itself, no draws
    rng = random.Random(1)
    noisy = channel(clean, rng, 1.0, 0.0)
    snr = 10 * math.log10(clean.pow(2).mean() / (noisy - clean).pow(2).mean())
    assert CHANNEL_SNR[0] - 0.5 <= snr <= CHANNEL_SNR[1] + 0.5
    coarse = channel(clean, random.Random(2), 0.0, 1.0)
    assert torch.equal(coarse * 128, torch.round(coarse * 128)) and (coarse - clean).abs().max() <= 1 / 128


def test_peak_requantisation_gives_any_clip_few_levels_and_a_dc_offset():
    """quantize_mode peak: a loud and a very quiet clip (theo's peaks are near 0.03) both come out with
    16-128 levels over their own range, on a grid shifted by a DC offset, as an 8-bit recording would."""
    import random
    for scale in (1.0, 0.1):
        clean = torch.from_numpy(tone(0.5, 8000)) * scale
        coarse = channel(clean, random.Random(5), 0.0, 1.0, "peak")
        levels = torch.unique(coarse)
        assert 8 <= levels.numel() <= PEAK_LEVELS[1] + 2
        step = float((levels[1:] - levels[:-1]).min())
        assert PEAK_LEVELS[0] <= round(2 * float(clean.abs().max()) / step) <= PEAK_LEVELS[1]
        assert torch.allclose(coarse / step, torch.round(coarse / step), atol=1e-3)   # one grid of steps
        assert (coarse - clean).abs().max() <= (PEAK_DC_STEPS + 0.5) * step + 1e-6
    draws = [float(channel(torch.zeros(100) + 1e-3 * torch.randn(100), random.Random(i), 0.0, 1.0, "peak").mean())
             for i in range(20)]
    assert len({round(d, 6) for d in draws}) > 5 and min(draws) < 0 < max(draws)   # random DC, both signs
    with pytest.raises(UserError, match="quantize mode"):
        channel(clean, random.Random(0), 0.0, 1.0, "bits")


def test_validation_speaker_is_left_out_of_training(tmp_path, fsdd_subset):
    config = DigitsConfig(seed=3, train=10, validation=4, test=3, test_speaker="theo", validation_speaker="lucas")
    info = build(fsdd_subset, tmp_path / "out", config)
    speakers = lambda split: {l.split("\t")[2] for l in (tmp_path / "out" / f"{split}.tsv").read_text().splitlines()[1:]}
    assert speakers("validation") == {"lucas"} and speakers("train") == {"george"} and speakers("test") == {"theo"}
    assert info["config"]["validation_speaker"] == "lucas"
    with pytest.raises(UserError, match="validation speaker"):
        build(fsdd_subset, tmp_path / "bad", DigitsConfig(seed=3, train=2, validation=2, test=2, test_speaker="theo",
                                                          validation_speaker="theo"))
    task = asr_task("data.digits_validation_speaker=george", "data.digits_quantize_mode=peak", "data.digits_trim=0.5",
                    "data.digits_clip_speed=0.2")
    config = task._digits_config()
    assert (config.validation_speaker, config.quantize_mode, config.trim, config.clip_speed) == ("george", "peak", 0.5, 0.2)


def test_recut_trims_a_real_clip_to_its_loud_part_and_speed_resamples_it(data_root):
    """recut: a real FSDD "six" loses its quiet edges (the frames under the drawn threshold) and keeps its
    loudest frame; sped: a factor f gives a clip about 1/f as long; both are no-ops, drawing nothing, when off."""
    import random
    six = read_audio(FSDD / "6_jackson_0.wav", 8000)
    assert recut(six, random.Random(0), 0.0, 8000) is six and sped(six, random.Random(0), 0.0, 8000) is six
    rng = random.Random(0)
    cut = recut(six, rng, 1.0, 8000)
    same_draws = random.Random(0)
    same_draws.random()                                              # recut's "is this clip re-cut?" draw
    threshold = same_draws.uniform(*TRIM_DB)
    frames = six[: six.numel() // 80 * 80].view(-1, 80).pow(2).mean(1) + 1e-12
    loud = 10 * torch.log10(frames / frames.max()) > -threshold
    assert cut.numel() == (int(loud.nonzero()[-1]) - int(loud.nonzero()[0]) + 1) * 80 < 0.8 * six.numel()
    assert cut.abs().max() == six.abs().max()
    start = int(loud.nonzero()[0]) * 80
    assert torch.equal(cut, six[start: start + cut.numel()])
    lengths = {len(sped(six, random.Random(seed), 0.2, 8000)) / six.numel() for seed in range(8)}
    assert len(lengths) > 3 and all(1 / 1.21 <= r <= 1 / 0.79 for r in lengths)
    assert recut(torch.zeros(100), random.Random(0), 1.0, 8000).numel() == 100   # under two frames: kept


def test_channel_perturbation_touches_only_training_utterances(tmp_path, fsdd_subset):
    plain = build(fsdd_subset, tmp_path / "plain", DigitsConfig(seed=3, train=6, validation=3, test=3))
    build(fsdd_subset, tmp_path / "noisy", DigitsConfig(seed=3, train=6, validation=3, test=3, noise=1.0, quantize=1.0,
                                                        trim=1.0, clip_speed=0.2))
    assert plain["config"]["noise"] == 0.0
    read = lambda run, name: sf.read(str(tmp_path / run / "wav" / name))[0]
    assert not np.array_equal(read("plain", "train_00000.wav"), read("noisy", "train_00000.wav"))
    train_lines = lambda run: (tmp_path / run / "train.tsv").read_text()
    assert train_lines("plain") == train_lines("noisy")                # same digits, only the channel differs
    for split in ("validation", "test"):
        assert np.array_equal(read("plain", f"{split}_00000.wav"), read("noisy", f"{split}_00000.wav"))


def test_digits_builder_cli_turns_ones_own_recordings_into_a_test_manifest(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    for digit in range(10):
        wav(mine / f"{digit}_me_0.wav", 0.3, 44100, channels=2, freq=200 + 50 * digit)
    assert digits_main([str(mine), str(tmp_path / "out"), "--seed", "1", "--test", "6"]) == 0
    assert "test speaker me" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out").glob("*.tsv")) == ["test.tsv"]
    lines = (tmp_path / "out" / "test.tsv").read_text().splitlines()
    assert lines[0] == "audio\ttext\tspeaker" and len(lines) == 7 and all(l.endswith("\tme") for l in lines[1:])
    assert digits_main([str(tmp_path / "nowhere"), str(tmp_path / "out2")]) == 2
    assert "not a folder of spoken-digit clips" in capsys.readouterr().err


def test_digits_spec_is_built_once_into_the_cache(cache, fsdd_subset):
    task = asr_task("data.digits_train=6", "data.digits_validation=2", "data.digits_test=3")
    train = task.load(f"digits:{fsdd_subset}", "train")
    test = task.load(f"digits:{fsdd_subset}", "test")
    assert len(train) == 6 and len(test) == 3
    assert [p.name for p in (cache / "digits").iterdir()] and all(str(cache) in s for s in test["source"])
    assert task.load(f"digits:{fsdd_subset}@test", "validation")["target"] == test["target"]


# -- joint CTC ---------------------------------------------------------------------------------------------------
def test_ctc_head_joins_the_loss_and_backpropagates():
    torch.manual_seed(0)
    feats, lengths = torch.randn(2, 40, 80), torch.tensor([40, 23])
    gold = torch.tensor([[5, 6, 6, 7, 3], [8, 5, 3, 0, 0]])          # ids end in </s> (3), padded with 0
    target_in = torch.cat([torch.full((2, 1), 2), gold[:, :-1]], dim=1)
    model = Seq2Seq(frontend(), model_settings(), 10, ctc=True)
    logits, _ = model(feats, lengths, target_in)
    attention, count = sequence_loss(logits, gold, 0.0)
    ctc = model.ctc.loss(gold, eos=3)
    joint = joint_loss(attention, ctc, 0.3)
    assert torch.isfinite(ctc) and ctc > 0 and not torch.isclose(joint, attention)
    joint.backward()
    assert model.ctc.proj.weight.grad.abs().sum() > 0
    assert model.encoder.frontend.conv1.weight.grad.abs().sum() > 0
    plain = Seq2Seq(frontend(), model_settings(), 10)
    assert plain.ctc is None and not any(k.startswith("ctc.") for k in plain.state_dict())


def test_ctc_uses_subsampled_lengths():
    """The CTC loss of a padded batch equals that of each utterance alone: it reads the encoder's own lengths."""
    torch.manual_seed(0)
    model = Seq2Seq(frontend(), model_settings(), 10, ctc=True).eval()
    feats = torch.randn(2, 40, 80)
    feats[1, 23:] = 0
    gold = torch.tensor([[5, 6, 7, 3], [8, 5, 3, 0]])
    model.encode(feats, torch.tensor([40, 23]))
    together = model.ctc.loss(gold, eos=3)
    alone = 0.0
    for i, n in enumerate((40, 23)):
        model.encode(feats[i:i + 1, :n], torch.tensor([n]))
        alone = alone + model.ctc.loss(gold[i:i + 1, : int((gold[i] != 0).sum())], eos=3)
    assert torch.allclose(together, alone, rtol=1e-4)


def test_ctc_best_path_and_sequence_scores():
    """Greedy CTC merges repeats and drops blanks within each row's length; the sequence score is
    log P_ctc(y | x), the sum over alignments, equal to minus F.ctc_loss."""
    steps = [[0, 5, 5, 0, 5, 6, 6, 0, 7], [4, 4, 0, 4, 0, 0, 0, 0, 0]]
    log_probs = torch.log_softmax(10 * torch.nn.functional.one_hot(torch.tensor(steps), 9).float(), -1)
    assert best_path(log_probs, torch.tensor([9, 4])) == [[5, 5, 6, 7], [4, 4]]
    assert best_path(log_probs, torch.tensor([2, 2])) == [[5], [4]]
    scores = sequence_log_probs(log_probs, torch.tensor([9, 4]), [[5, 5, 6, 7], [4]])
    assert scores[0] > -1.0 > scores[1]                                        # the best path is likely, [4] is not
    assert torch.isinf(sequence_log_probs(log_probs[:1], torch.tensor([2]), [[5, 6, 7]])).all()   # too long to fit
    expected = -torch.nn.functional.ctc_loss(log_probs[:1].transpose(0, 1), torch.tensor([[5, 5, 6, 7]]),
                                             torch.tensor([9]), torch.tensor([4]), reduction="sum")
    assert torch.allclose(scores[0], expected)


def test_ctc_weighted_decoding_rescores_the_attention_n_best():
    """search.ctc_weight = 1 returns the CTC head's best path; 0 < w < 1 ranks the attention hypotheses plus
    that path by (1 - w) log P_att + w log P_ctc."""
    from pipelines.search import Hypothesis, beam_search
    torch.manual_seed(0)
    model = Seq2Seq(frontend(), model_settings(), 10, ctc=True).eval()
    feats, lengths = torch.randn(2, 40, 80), torch.tensor([40, 23])
    with torch.no_grad():
        memory = model.encode(feats, lengths)
        log_probs = torch.log_softmax(model.ctc.proj(memory.states), -1)
    paths = best_path(log_probs, memory.mask.sum(1))
    alone = ctc_rescore(model, memory, None, 1.0, 1)
    assert [h[0].tokens for h in alone] == [p + [3] for p in paths]
    hyps = beam_search(model, memory, torch.tensor([6, 6]), 2, 3, beam=3, n_best=3)
    for weight in (0.3, 0.9):
        joint = ctc_rescore(model, memory, hyps, weight, 5)
        for b in range(2):
            found = {tuple(t for t in h.tokens if t != 3) for h in hyps[b]} | {tuple(paths[b])}
            assert {tuple(h.tokens[:-1]) for h in joint[b]} == found and all(h.tokens[-1] == 3 for h in joint[b])
            assert [h.score for h in joint[b]] == sorted((h.score for h in joint[b]), reverse=True)
            # recompute the best candidate's joint score by hand
            best = list(joint[b][0].tokens)
            inputs, gold = torch.tensor([[2] + best[:-1]]), torch.tensor([best])
            with torch.no_grad():
                logits, _ = model.decoder(inputs, memory.select(torch.tensor([b])))
            att = torch.log_softmax(logits, -1).gather(2, gold.unsqueeze(-1)).sum()
            ctc = sequence_log_probs(log_probs[b:b + 1], memory.mask[b:b + 1].sum(1), [best[:-1]])[0]
            assert joint[b][0].score == pytest.approx(float((1 - weight) * att + weight * ctc), abs=1e-3)


# -- the demo through the real CLI ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, request) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("asr")
    env = {"S2S_CACHE_DIR": str(root / "cache")}
    result = run_cli("train", "asr-demo", "--out", str(root / "run"), "--quiet", env=env)
    assert result.returncode == 0, result.stderr
    assert "120 training examples, 16 validation" in result.stdout
    return root / "run", env


def test_demo_trains_with_ctc_evaluates_and_predicts(demo_run, tmp_path):
    run, env = demo_run
    tensors, _ = read_checkpoint(run / "checkpoints" / "last.safetensors")
    assert "model/ctc.proj.weight" in tensors                      # train.ctc_weight = 0.3 in asr-demo
    log = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert log and all(0 <= r["valid_wer"] and 0 <= r["valid_cer"] <= 100 for r in log)
    result = run_cli("evaluate", str(run), "--json", env=env)
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["examples"] == 16 and metrics["primary"] == "wer" and metrics["wer"] >= 0
    predictions = (run / "eval" / "test.predictions.txt").read_text().splitlines()
    assert len(predictions) == 16
    clip = wav(tmp_path / "stereo.wav", 0.6, 44100, channels=2)
    result = run_cli("predict", str(run), str(FSDD / "3_theo_0.wav"), str(clip), env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    vocabulary = {label_text(str(d)) for d in range(10)}
    assert len(lines) == 2 and all(set(l.split()) <= vocabulary for l in lines)
    for weight in ("1", "0.5"):   # CTC-only and joint CTC/attention decoding, chosen at evaluation time
        result = run_cli("evaluate", str(run), "--json", "--set", f"search.ctc_weight={weight}", env=env)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["examples"] == 16
    result = run_cli("evaluate", str(run), "--set", "search.ctc_weight=1.5", env=env)
    assert result.returncode == 2 and "search.ctc_weight" in result.stderr


def test_predict_names_a_corrupt_file(demo_run, tmp_path):
    run, env = demo_run
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    assert_user_error(run_cli("predict", str(run), str(FSDD / "3_theo_0.wav"), str(bad), env=env), "bad.wav",
                      "cannot decode")
    with pytest.raises(UserError, match="missing.wav: no such audio file"):
        asr_task().parse_inputs([str(FSDD / "3_theo_0.wav"), str(tmp_path / "missing.wav")])


# -- bad input -----------------------------------------------------------------------------------------------------
def manifest_with(tmp_path: Path, bad: Path) -> Path:
    good = wav(tmp_path / "good.wav", 0.3)
    path = tmp_path / "m.tsv"
    path.write_text(f"audio\ttext\n{good.name}\tfirst\n{bad.name}\tsecond\n{good.name}\tthird\n")
    return path


def test_corrupt_file_is_named_or_skipped_and_counted(tmp_path, data_root, capfd):
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF1234WAVE" + os.urandom(64))
    manifest = manifest_with(tmp_path, bad)
    with pytest.raises(UserError, match=r"m\.tsv:3: .*corrupt\.wav: cannot decode audio"):
        asr_task().load(str(manifest), "train")
    data = asr_task("data.skip_bad_audio=true").load(str(manifest), "train")
    assert data["target"] == ["first", "third"]
    assert "skipped 1 bad audio file(s) of 3" in capfd.readouterr().err


def test_truncated_file_is_named(tmp_path, data_root):
    full = wav(tmp_path / "full.wav", 0.5)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[: 44 + 3000])
    with pytest.raises(UserError, match=r"cut\.wav: truncated audio file"):
        asr_task().load(str(manifest_with(tmp_path, cut)), "train")
    assert len(asr_task("data.skip_bad_audio=true").load(str(manifest_with(tmp_path, cut)), "train")) == 2


def test_empty_clip_is_named(tmp_path, data_root):
    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros(0, dtype="float32"), 16000, subtype="PCM_16")
    with pytest.raises(UserError, match=r"empty\.wav: empty audio clip"):
        asr_task().load(str(manifest_with(tmp_path, empty)), "train")


def test_missing_manifest_path_names_the_line(tmp_path, data_root):
    wav(tmp_path / "here.wav", 0.2)
    (tmp_path / "m.jsonl").write_text(json.dumps({"audio": "here.wav", "text": "a"}) + "\n"
                                      + json.dumps({"audio": "gone.wav", "text": "b"}) + "\n")
    with pytest.raises(UserError, match=r"m\.jsonl:2: audio file .*gone\.wav not found"):
        asr_task().load(str(tmp_path / "m.jsonl"), "test")
    (tmp_path / "m.tsv").write_text("audio\ttext\nhere.wav\ta\nhere.wav\tb\nnope/gone.wav\tc\n")
    with pytest.raises(UserError, match=r"m\.tsv:4: audio file .*gone\.wav not found"):
        asr_task().load(str(tmp_path / "m.tsv"), "test")


def test_stereo_and_other_rates_in_a_manifest_are_not_errors(tmp_path, data_root):
    wav(tmp_path / "s44.wav", 0.4, 44100, channels=2)
    wav(tmp_path / "m22.wav", 0.4, 22050)
    (tmp_path / "m.tsv").write_text("audio\ttext\ns44.wav\tstereo\nm22.wav\tmono\n")
    task = asr_task()
    data = task.load(str(tmp_path / "m.tsv"), "test")
    features = [clip_features(Path(p), 8000, 80) for p in data["source"]]   # asr-demo runs at 8 kHz
    assert [f.shape for f in features] == [(41, 80), (41, 80)]


def test_bad_manifests_are_user_errors(tmp_path, data_root):
    wav(tmp_path / "a.wav", 0.2)
    cases = {"nocol.tsv": ("file\ttext\na.wav\tx\n", "no audio column"),
             "short.tsv": ("audio\ttext\na.wav\n", "short.tsv:2: 1 tab-separated fields"),
             "blank.tsv": ("audio\ttext\na.wav\t?!\n", r"blank\.tsv:2: transcript '\?!' is empty")}
    for name, (text, needle) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(UserError, match=needle):
            asr_task().load(str(tmp_path / name), "test")
    with pytest.raises(UserError, match="unknown part @dev"):
        asr_task().load(f"{tmp_path}/short.tsv@dev", "test")
