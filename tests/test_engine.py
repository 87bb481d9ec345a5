"""The engine's building blocks: every model option runs, padding never leaks, fast and step paths agree."""
from __future__ import annotations

import itertools

import datasets
import pytest
import torch

from pipelines.attention import Attention
from pipelines.batching import plan_batches
from pipelines.encoder import TextEmbedding
from pipelines.model import Classifier, Seq2Seq
from pipelines.schedules import teacher_forcing_ratio
from pipelines.settings import CORE_SCHEMA
from pipelines.task import TextSource, TextTarget
from pipelines.tokenization import TextVocab
from pipelines.loss import output_layer_loss, sequence_loss


def settings(**overrides) -> dict:
    model = {k: v.default for k, v in CORE_SCHEMA["model"].items()}
    model.update(embedding=12, hidden=16, dropout=0.0, **overrides)
    return model


def batch(vocab: int = 20):
    torch.manual_seed(0)
    src = torch.randint(4, vocab, (3, 6))
    lengths = torch.tensor([6, 2, 4])
    for i, n in enumerate(lengths):
        src[i, n:] = 0
    tgt = torch.randint(4, vocab, (3, 5))
    tgt[:, 0] = 2
    return src, lengths, tgt


@pytest.mark.parametrize("cell,bridge,context,attention,bidirectional,layers", [
    combo for combo in itertools.product(["gru", "lstm"], ["last", "linear", "pool"], ["init", "every_step", "both"],
                                          ["none", "dot", "general", "additive"], [True], [1])
] + [("lstm", "last", "both", "general", False, 2), ("gru", "pool", "init", "additive", True, 2)])
def test_every_option_combination_trains(cell, bridge, context, attention, bidirectional, layers):
    torch.manual_seed(0)
    model = Seq2Seq(TextEmbedding(20, 12, 0.0), settings(cell=cell, bridge=bridge, context=context,
                                                         attention=attention, bidirectional=bidirectional,
                                                         layers=layers), 20)
    src, lengths, tgt = batch()
    logits, weights = model(src, lengths, tgt)
    assert logits.shape == (3, 5, 20)
    assert (weights is None) == (attention == "none")
    loss, n = sequence_loss(logits, tgt, 0.1)
    loss.backward()
    assert n == 15 and torch.isfinite(loss)
    assert all(p.grad is not None for name, p in model.named_parameters() if "decoder.generator" in name)


@pytest.mark.parametrize("kind", ["dot", "general", "additive"])
def test_attention_gives_padding_zero_weight(kind):
    torch.manual_seed(0)
    attention = Attention(kind, 8, 8)
    memory = torch.randn(2, 5, 8)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    context, weights = attention(torch.randn(2, 3, 8), memory, attention.keys(memory), mask)
    assert torch.all(weights[1, :, 2:] == 0)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 3))
    assert context.shape == (2, 3, 8)


def test_padding_does_not_change_a_sentence_result():
    """A sentence alone and the same sentence padded in a batch give the same output (packing works)."""
    torch.manual_seed(0)
    model = Seq2Seq(TextEmbedding(20, 12, 0.0), settings(cell="lstm", bridge="pool", attention="additive"), 20).eval()
    src, lengths, tgt = batch()
    with torch.no_grad():
        together, _ = model(src, lengths, tgt)
        alone, _ = model(src[1:2, :2], lengths[1:2], tgt[1:2])
    assert torch.allclose(together[1], alone[0], atol=1e-5)


@pytest.mark.parametrize("cell,context,feeding", [("gru", "both", False), ("lstm", "every_step", False),
                                                  ("gru", "both", True), ("lstm", "init", True)])
def test_training_paths_equal_step_by_step_search(cell, context, feeding):
    """The training paths (whole-sequence RNN, or with input feeding a step loop whose output layer runs
    once over all steps) compute what the step function used by search computes."""
    torch.manual_seed(0)
    model = Seq2Seq(TextEmbedding(20, 12, 0.0), settings(cell=cell, context=context, input_feeding=feeding), 20).eval()
    src, lengths, tgt = batch()
    with torch.no_grad():
        fast, _ = model(src, lengths, tgt, teacher_forcing=1.0)
        memory = model.encode(src, lengths)
        state, feed = model.decoder.initial_state(memory)
        steps = []
        for t in range(tgt.size(1)):
            logits, state, feed, _ = model.decoder.step(tgt[:, t], state, feed, memory)
            steps.append(logits)
    assert torch.allclose(fast, torch.stack(steps, 1), atol=1e-5)


def test_scheduled_sampling_feeds_predictions():
    torch.manual_seed(0)
    model = Seq2Seq(TextEmbedding(20, 12, 0.0), settings(), 20).eval()
    src, lengths, tgt = batch()
    with torch.no_grad():
        gold, _ = model(src, lengths, tgt, teacher_forcing=1.0)
        sampled, _ = model(src, lengths, tgt, teacher_forcing=0.0)
    assert torch.allclose(gold[:, 0], sampled[:, 0], atol=1e-6)       # first step always reads <s>
    assert not torch.allclose(gold[:, 1:], sampled[:, 1:])


def test_teacher_forcing_schedules_decay_from_start_to_floor():
    assert teacher_forcing_ratio("constant", 0.8, 10_000) == 0.8
    for kind in ("linear", "exponential", "inverse_sigmoid"):
        values = [teacher_forcing_ratio(kind, 1.0, s, floor=0.1) for s in (0, 1000, 5000, 50_000)]
        assert values == sorted(values, reverse=True), kind
        assert values[0] <= 1.0 and values[-1] == pytest.approx(0.1, abs=1e-3), kind
    assert teacher_forcing_ratio("linear", 1.0, 100, k=0.001) == pytest.approx(0.9)


def test_input_feeding_and_tied_embeddings():
    torch.manual_seed(0)
    model = Seq2Seq(TextEmbedding(20, 12, 0.0), settings(input_feeding=True, tie_embeddings=True), 20)
    assert model.decoder.generator.weight is model.decoder.embed.weight
    src, lengths, tgt = batch()
    logits, _ = model(src, lengths, tgt)
    assert logits.shape == (3, 5, 20)


def test_classifier_head_on_context():
    model = Classifier(TextEmbedding(20, 12, 0.0), settings(bridge="pool"), 3)
    src, lengths, _ = batch()
    assert model(src, lengths).shape == (3, 3)


def test_label_smoothing_raises_loss_of_a_confident_correct_model():
    logits = torch.full((1, 2, 5), -10.0)
    gold = torch.tensor([[1, 2]])
    logits[0, 0, 1] = logits[0, 1, 2] = 10.0
    plain, _ = sequence_loss(logits, gold, 0.0)
    smooth, _ = sequence_loss(logits, gold, 0.1)
    assert plain < 1e-3 < smooth


def test_batches_respect_token_budget_and_are_reproducible():
    src = [((i * 7) % 23) + 1 for i in range(200)]
    tgt = [((i * 5) % 19) + 1 for i in range(200)]
    plan = plan_batches(src, tgt, 100, seed=1, epoch=0)
    assert sorted(i for b in plan for i in b) == list(range(200))
    assert all(max(max(src[i], tgt[i]) for i in b) * len(b) <= 100 for b in plan)
    assert plan == plan_batches(src, tgt, 100, seed=1, epoch=0)
    assert plan != plan_batches(src, tgt, 100, seed=1, epoch=1)


def test_a_joint_tokenizer_keeps_each_sides_own_types(tmp_path, data_root):
    """One BPE model for both languages, but each side's vocabulary holds only the types its training
    text uses (OpenNMT-py's per-side vocabularies): smaller output layer, same text after decoding."""
    folder = data_root / "translation" / "multi30k"
    de = (folder / "train.de").read_text(encoding="utf-8").splitlines()[:2000]
    en = (folder / "train.en").read_text(encoding="utf-8").splitlines()[:2000]
    train = datasets.Dataset.from_dict({"source": de, "target": en})
    data = {"joint_vocab": True, "tokenizer": "bpe", "vocab_size": 3000, "lowercase": False}
    settings = {"data": data}
    source, target = TextSource(settings), TextTarget(settings)
    source.fit(train, tmp_path)
    target.fit(train, tmp_path)
    joint = source.vocab.tokenizer.get_vocab_size()
    assert len(source.vocab) < joint and len(target.vocab) < joint
    assert source.vocab.tokens([0, 1, 2, 3]) == target.vocab.tokens([0, 1, 2, 3]) == ["<pad>", "<unk>", "<s>", "</s>"]
    ids = target.encode(en[:50])
    assert max(max(x) for x in ids) < len(target.vocab) and all(target.vocab.unk_id not in x for x in ids)
    assert [target.decode(x) for x in ids] == en[:50]
    # A German-only piece is <unk> on the English side, and a reload gives the same ids.
    german = next(t for t in source.vocab.tokens(range(4, len(source.vocab))) if target.vocab.token_to_id(t) == 1)
    assert target.vocab.token_to_id(german) == target.vocab.unk_id
    again_source, again_target = TextSource(settings), TextTarget(settings)
    again_source.load(tmp_path)
    again_target.load(tmp_path)
    assert again_target.encode(en[:50]) == ids and again_source.encode(de[:50]) == source.encode(de[:50])


@pytest.mark.parametrize("kind", ["bpe", "word", "char"])
def test_tokenizers_round_trip_exactly(kind):
    texts = ["Ein Mann, der läuft.", "Zwei Hunde spielen im Schnee!", "Ein Kind (klein) lacht."] * 20
    vocab = TextVocab.train(texts, kind, 200, lowercase=False)
    for text in texts[:3]:
        ids = vocab.encode([text], add_eos=True)[0]
        assert ids[-1] == vocab.eos_id
        assert vocab.decode(ids) == text
    assert vocab.tokens([0, 1, 2, 3]) == ["<pad>", "<unk>", "<s>", "</s>"]



def test_uniform_initialisation_bounds_weights_and_keeps_padding_and_zero_parameters():
    from pipelines.model import init_uniform
    torch.manual_seed(0)
    model = Seq2Seq(TextEmbedding(500, 64, 0.0), settings(coverage=True), 500)
    init_uniform(model, 0.1)
    for embedding in (model.encoder.frontend.embed, model.decoder.embed):
        assert torch.all(embedding.weight[0] == 0)
        assert embedding.weight[1:].abs().max().item() <= 0.1
    for name, weight in model.named_parameters():
        assert weight.abs().max().item() <= 0.1, name
    assert model.decoder.attention.coverage_scale.item() == 0.0   # zero by design, left alone


def test_uniform_initialisation_leaves_a_non_text_frontend_alone():
    from pipelines.model import init_uniform

    class Frames(torch.nn.Module):   # stands in for a pretrained CNN or an audio front-end
        def __init__(self):
            super().__init__()
            self.proj, self.output_size = torch.nn.Linear(5, 12), 12

    model = Seq2Seq(Frames(), settings(), 20)
    before = model.encoder.frontend.proj.weight.clone()
    init_uniform(model, 0.01)
    assert torch.equal(model.encoder.frontend.proj.weight, before)
    assert model.decoder.combine.weight.abs().max().item() <= 0.01


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_fused_output_layer_loss_matches_cross_entropy_and_its_gradients(smoothing):
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 50).double()
    x = torch.randn(30, 16, dtype=torch.double, requires_grad=True)
    gold = torch.randint(1, 50, (30,))
    grads = []
    for fused in (False, True):
        layer.zero_grad()
        x.grad = None
        loss = (output_layer_loss(x, layer, gold, smoothing) if fused else
                torch.nn.functional.cross_entropy(layer(x), gold, label_smoothing=smoothing, reduction="sum"))
        (0.5 * loss).backward()
        grads.append((loss.detach(), x.grad.clone(), layer.weight.grad.clone(), layer.bias.grad.clone()))
    for reference, fused in zip(*grads):
        assert torch.allclose(reference, fused, atol=1e-10)
    with torch.no_grad():   # validation takes the plain path, same value
        assert float(output_layer_loss(x, layer, gold, smoothing)) == pytest.approx(float(grads[0][0]))
