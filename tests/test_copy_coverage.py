"""Copy attention (pointer-generator) and coverage in the engine, and the search constraints that go with them."""
from __future__ import annotations

import json
import random

import pytest
import torch

from pipelines import UserError
from pipelines import copy as pointer
from pipelines.decoder import Decoder, Memory
from pipelines.encoder import TextEmbedding
from pipelines.model import Seq2Seq
from pipelines.search import beam_search, coverage_penalty, greedy
from pipelines.settings import CORE_SCHEMA
from pipelines.tokenization import TextVocab
from pipelines.loss import sequence_loss
from pipelines.training import coverage_loss

MODEL = {name: key.default for name, key in CORE_SCHEMA["model"].items()}


def model_settings(**changes) -> dict:
    return {**MODEL, "embedding": 12, "hidden": 16, "dropout": 0.0, **changes}


class Sides:
    """A joint word vocabulary as TextSource/TextTarget would hold it."""

    def __init__(self, vocab: TextVocab):
        self.vocab = vocab


# -- the extended vocabulary -------------------------------------------------------------------------

def test_source_oovs_get_temporary_ids_and_decode_back_to_words():
    vocab = TextVocab.train(["meeting with the team today", "send the file, please"], "word", 100, lowercase=True)
    side = Sides(vocab)
    texts = ["Zorro meeting with Quux, the Zorro team"]
    items = vocab.encode(texts)
    [ext] = pointer.extend_sources(side, side, texts, items)
    size = len(vocab)
    assert ext.oovs == ["▁zorro", "▁quux"]                          # normalized like the tokenizer (lowercase)
    assert ext.ids[0] == size and ext.ids[3] == size + 1 and ext.ids[6] == size   # same word, same temporary id
    assert ext.ids[1] == vocab.tokenizer.token_to_id("▁meeting")
    # A target <unk> that its source holds becomes that OOV's id; one the source lacks stays <unk>.
    targets = vocab.encode(["Zorro and Quux meeting"], add_eos=True)
    [gold] = pointer.extend_targets(side, ["Zorro and Quux meeting"], targets, [ext])
    assert gold[0] == size and gold[1] == vocab.unk_id and gold[2] == size + 1 and gold[-1] == vocab.eos_id
    assert pointer.decode(vocab, [size, vocab.tokenizer.token_to_id("▁meeting"), size + 1, vocab.eos_id, size],
                          ext.oovs) == "zorro meeting quux"


@pytest.mark.parametrize("kind", ["word", "bpe", "char"])
def test_extended_ids_decode_back_to_the_source_text(kind):
    """Every source token, in the vocabulary or not, survives the trip through the extended vocabulary."""
    vocab = TextVocab.train(["meeting with the team today", "send the file, please", "budget review for q3"], kind,
                            60 if kind == "bpe" else 100, lowercase=False)
    texts = ["Zorro meeting with Quux, the Zorro team", "Café résumé — naïve 42% budget!", "x  y"]
    extended = pointer.extend_sources(Sides(vocab), Sides(vocab), texts, vocab.encode(texts))
    assert all(e.oovs for e in extended)
    assert [pointer.decode(vocab, e.ids, e.oovs) for e in extended] == texts


def test_separate_vocabularies_are_matched_by_token_string():
    src = TextVocab.train(["hund katze haus apple"], "word", 100, False)
    tgt = TextVocab.train(["dog cat house apple"], "word", 100, False)
    [ext] = pointer.extend_sources(Sides(src), Sides(tgt), ["hund apple"], src.encode(["hund apple"]))
    assert ext.oovs == ["▁hund"] and ext.ids == [len(tgt), tgt.tokenizer.token_to_id("▁apple")]


def test_a_piece_the_target_side_drops_is_copied_by_its_token_string():
    """A joint tokenizer restricted per side: a source word the target vocabulary lacks becomes a copyable
    OOV, and a target that uses it learns to copy it."""
    joint = TextVocab.train(["der hund schläft", "the dog sleeps", "hund dog"], "word", 100, False)
    src, tgt = joint.restrict(["der hund schläft", "hund"]), joint.restrict(["the dog sleeps", "dog"])
    assert tgt.token_to_id("▁hund") == tgt.unk_id and not src.same_ids(tgt)
    [ext] = pointer.extend_sources(Sides(src), Sides(tgt), ["der hund"], src.encode(["der hund"]))
    assert ext.oovs == ["▁der", "▁hund"] and ext.ids == [len(tgt), len(tgt) + 1]
    [gold] = pointer.extend_targets(Sides(tgt), ["hund sleeps"], tgt.encode(["hund sleeps"], add_eos=True), [ext])
    assert gold == [len(tgt) + 1, tgt.token_to_id("▁sleeps"), tgt.eos_id]
    assert pointer.decode(tgt, gold, ext.oovs) == "hund sleeps"


def test_copy_needs_text_on_both_sides():
    class Images:
        pass
    with pytest.raises(UserError, match="model.copy"):
        pointer.require_text(Images(), Sides(TextVocab.train(["a b"], "word", 10, False)))


def test_copy_or_coverage_without_attention_is_a_user_error():
    for option in ("copy", "coverage"):
        with pytest.raises(UserError, match=f"model.{option} = true needs attention"):
            Seq2Seq(TextEmbedding(5, 12, 0.0), model_settings(attention="none", **{option: True}), 10)


# -- the decoder ---------------------------------------------------------------------------------------

def _tiny(batch=3, src_len=6, tgt_len=5, vocab=20, **changes):
    torch.manual_seed(0)
    model = Seq2Seq(TextEmbedding(vocab, 12, 0.0), model_settings(**changes), vocab).eval()
    source = torch.randint(4, vocab, (batch, src_len))
    lengths = torch.tensor([src_len] + [src_len - 2] * (batch - 1))
    target_in = torch.randint(4, vocab, (batch, tgt_len))
    return model, source, lengths, target_in


def _step_by_step(model, memory, target_in):
    decoder = model.decoder
    state, feed = decoder.initial_state(memory)
    out = []
    for t in range(target_in.size(1)):
        logits, state, feed, _ = decoder.step(target_in[:, t], state, feed, memory)
        out.append(logits)
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("attention", ["dot", "general", "additive"])
def test_options_off_leave_the_parallel_decoder_unchanged(attention):
    """With copy and coverage off: no new parameters, and the logits are exactly softmax(W tanh(W_c[h; c]))."""
    model, source, lengths, target_in = _tiny(attention=attention)
    keys = set(model.state_dict())
    assert not any("switch" in k or "coverage" in k for k in keys)
    with torch.no_grad():
        logits, weights = model(source, lengths, target_in)
        memory = model.encode(source, lengths)
        d = model.decoder
        out, _ = d.rnn(d.embed(target_in), memory.init)
        if attention == "additive":
            a = d.attention
            scores = a.v(torch.tanh(a.query_proj(out).unsqueeze(2) + a.memory_proj(memory.states).unsqueeze(1))).squeeze(-1)
        else:   # general: q·W·m, with W·m computed once per batch
            keys = memory.states if attention == "dot" else memory.states @ d.attention.query_proj.weight
            scores = out @ keys.transpose(1, 2)
        w = torch.softmax(scores.masked_fill(~memory.mask.unsqueeze(1), float("-inf")), -1)
        expected = d.generator(torch.tanh(d.combine(torch.cat([out, w @ memory.states], -1))))
        assert torch.equal(logits, expected) and torch.equal(weights, w)
        assert torch.allclose(_step_by_step(model, memory, target_in), logits, atol=1e-5)


@pytest.mark.parametrize("attention", ["general", "additive"])
@pytest.mark.parametrize("copy,coverage", [(True, False), (False, True), (True, True)])
def test_copy_and_coverage_agree_between_parallel_and_step_paths(attention, copy, coverage):
    model, source, lengths, target_in = _tiny(attention=attention, copy=copy, coverage=coverage)
    with torch.no_grad():
        ids = source.clone()
        if copy:
            ids[0, 2] = 20                               # one source OOV with temporary id V + 0
            target_in[0, 3] = 20                         # ... fed back in as <unk>
        out, weights = model(source, lengths, target_in, copy_ids=ids if copy else None, extra_vocab=1 if copy else 0)
        memory = model.encode(source, lengths)
        memory.copy_ids, memory.extra_vocab = (ids, 1) if copy else (None, 0)
        assert torch.allclose(_step_by_step(model, memory, target_in), out, atol=1e-5)
    if copy:                                             # log-probabilities over V + 1, summing to one
        assert out.size(-1) == 21 and torch.allclose(out.exp().sum(-1), torch.ones(out.shape[:2]), atol=1e-4)
        assert bool((out[1:, :, 20].exp() < 1e-9).all())  # the OOV slot is reachable only where a source holds it
        assert float(out[0, :, 20].exp().min()) > 0


def test_copy_loss_is_the_nll_of_the_log_probabilities():
    logp = torch.log_softmax(torch.randn(2, 3, 7), -1)
    gold = torch.tensor([[1, 6, 0], [2, 3, 4]])
    loss, count = sequence_loss(logp, gold, 0.0, log_probs=True, vocab_size=5)
    manual = -sum(float(logp[b, t, gold[b, t]]) for b in range(2) for t in range(3) if gold[b, t])
    assert count == 5 and float(loss) == pytest.approx(manual, rel=1e-5)
    smoothed, _ = sequence_loss(logp, gold, 0.1, log_probs=True, vocab_size=5)
    uniform = -sum(float(logp[b, t, :5].mean()) for b in range(2) for t in range(3) if gold[b, t])
    assert float(smoothed) == pytest.approx(0.9 * manual + 0.1 * uniform, rel=1e-5)


def test_coverage_loss_sums_the_overlap_with_earlier_attention():
    weights = torch.tensor([[[0.5, 0.5, 0.0], [0.6, 0.2, 0.2], [0.1, 0.1, 0.8]]])
    gold = torch.tensor([[5, 6, 0]])                     # the third step is padding
    # step 2: min(.6,.5) + min(.2,.5) + min(.2,0) = 0.7; step 1: 0; step 3 ignored
    assert float(coverage_loss(weights, gold)) == pytest.approx(0.7)


# -- copy on a trained model ----------------------------------------------------------------------------

TEMPLATES = ["please send {} the file", "{} called about the meeting", "tell {} to call me back",
             "the report from {} is late", "can {} join us today", "lunch with {} on friday"]


def _names(rng: random.Random, count: int, taken: set[str]) -> list[str]:
    syllables = ["ka", "zo", "ri", "mu", "te", "lo", "vi", "qua", "ne", "sh", "bo", "fi", "gu", "xe"]
    out = []
    while len(out) < count:
        name = "".join(rng.choice(syllables) for _ in range(3))
        if name not in taken:
            taken.add(name)
            out.append(name)
    return out


def test_copy_reproduces_source_words_never_seen_in_training(tmp_path, monkeypatch):
    rng = random.Random(7)
    taken: set[str] = set()
    train_names, test_names = _names(rng, 300, taken), _names(rng, 40, taken)

    def write(path, names):
        rows = [{"source": rng.choice(TEMPLATES).format(n), "target": f"reply to {n}"} for n in names]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    write(tmp_path / "train.jsonl", train_names * 2)
    write(tmp_path / "valid.jsonl", train_names[:20])
    write(tmp_path / "test.jsonl", test_names)
    words = {w for t in TEMPLATES for w in t.format("").split()} | {"reply", "to"}
    (tmp_path / "registry.toml").write_text(f"""
[copy-toy]
task = "translation"
[copy-toy.data]
train = "{tmp_path / 'train.jsonl'}"
validation = "{tmp_path / 'valid.jsonl'}"
tokenizer = "word"
joint_vocab = true
vocab_size = {len(words) + 4}
[copy-toy.model]
cell = "gru"
embedding = 32
hidden = 64
dropout = 0.0
attention = "additive"
copy = true
[copy-toy.train]
batch_tokens = 400
lr = 0.01
max_steps = 220
max_epochs = 100
eval_every = 220
threads = 1
[copy-toy.search]
beam = 1
""", encoding="utf-8")
    monkeypatch.setenv("S2S_REGISTRY", str(tmp_path / "registry.toml"))
    from pipelines import workflows
    run, _ = workflows.train("copy-toy", out=tmp_path / "run", show_progress=False, log=lambda *a: None)
    vocab = run.target.vocab
    assert all(vocab.tokenizer.token_to_id("▁" + n) is None for n in train_names + test_names)   # all <unk>
    _, _, result, predictions = workflows.evaluate(run.folder, data=f"test={tmp_path / 'test.jsonl'}", beam=1)
    exact = sum(p.text == f"reply to {n}" for p, n in zip(predictions, test_names)) / len(test_names)
    assert exact >= 0.8, [p.text for p in predictions[:5]]
    _, [single] = workflows.predict(run.folder, ["can wobbleduck join us today"])
    assert single.text == "reply to wobbleduck"


# -- coverage on a fixed model, and the search constraints ---------------------------------------------

def _pointer_model(coverage_strength: float) -> tuple[Seq2Seq, Memory]:
    """A hand-set copy model: p_gen ~ 0 (it only copies), attention that prefers early source positions,
    and a coverage term of the given strength. Source tokens are distinct, so output = attended position."""
    decoder = Decoder(30, 4, 4, 1, "gru", 0.0, "additive", "init", False, 2, False, copy=True, coverage=True).eval()
    with torch.no_grad():
        for p in decoder.parameters():
            p.zero_()
        decoder.switch.bias.fill_(-30.0)                          # never generate: copy only
        decoder.attention.memory_proj.weight[0, 0] = 1.0         # score_i = 40 tanh(preference_i + strength cov_i)
        decoder.attention.v.weight[0, 0] = 40.0
        decoder.attention.coverage_proj.weight[0, 0] = coverage_strength
    source_len = 8
    preference = torch.linspace(0.8, 0.0, source_len)            # earlier positions score higher
    states = torch.stack([preference, torch.zeros(source_len)], -1).unsqueeze(0)
    memory = Memory(states, decoder.attention.keys(states), torch.ones(1, source_len, dtype=torch.bool),
                    torch.zeros(1, 4), None, torch.arange(10, 10 + source_len).unsqueeze(0), 0)
    model = torch.nn.Module()
    model.decoder = decoder
    return model, memory


def _repeated_ngrams(tokens: list[int], n: int) -> int:
    grams = [tuple(tokens[i: i + n]) for i in range(len(tokens) - n + 1)]
    return len(grams) - len(set(grams))


def test_coverage_lowers_repeated_ngrams_on_a_fixed_model():
    limits = torch.tensor([8])
    results = {}
    for strength in (0.0, -3.0):
        model, memory = _pointer_model(strength)
        [hyp] = greedy(model, memory, limits, TextVocab.bos_id, TextVocab.eos_id)
        results[strength] = hyp.tokens
    assert _repeated_ngrams(results[0.0], 1) == 7 and _repeated_ngrams(results[0.0], 2) == 6   # "a a a a ..."
    assert _repeated_ngrams(results[-3.0], 1) == 0 and _repeated_ngrams(results[-3.0], 2) == 0
    assert sorted(results[-3.0]) == list(range(10, 18))          # it moves on until it has covered the source


@pytest.mark.parametrize("beam", [1, 3])
def test_no_repeat_ngram_and_min_length(beam):
    model, memory = _pointer_model(0.0)                          # left alone, it repeats one token forever
    limits = torch.tensor([8])
    decode = (lambda **kw: greedy(model, memory, limits, 2, 3, **kw)[0]) if beam == 1 else \
        (lambda **kw: beam_search(model, memory, limits, 2, 3, beam, **kw)[0][0])
    for n in (1, 2, 3):
        assert _repeated_ngrams(decode(no_repeat_ngram=n).tokens, n) == 0
    with torch.no_grad():                                         # now make </s> the favourite of every step
        model.decoder.switch.bias.fill_(30.0)
        model.decoder.generator.bias[3] = 10.0
    assert decode().tokens == [3]
    tokens = decode(min_length=4).tokens
    assert len(tokens) == 5 and 3 not in tokens[:4] and tokens[4] == 3


def test_coverage_penalty_is_added_to_finished_scores():
    total = torch.tensor([[0.5, 1.5, 0.0], [1.0, 1.0, 1.0]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    assert coverage_penalty(total, mask, 0.2).tolist() == pytest.approx([0.2 * torch.log(torch.tensor(0.5)).item(), 0.0])
    model, memory = _pointer_model(0.0)                          # the same attention a at each of the 6 steps
    a = torch.softmax(40 * torch.tanh(memory.states[0, :, 0]), -1)
    expected = 0.7 * float(torch.log(torch.clamp(6 * a, min=1e-10, max=1.0)).sum())   # clamped as in search.py
    limits = torch.tensor([6])
    plain = beam_search(model, memory, limits, 2, 3, 2)[0][0]
    penalized = beam_search(model, memory, limits, 2, 3, 2, coverage_beta=0.7)[0][0]
    assert penalized.tokens == plain.tokens and penalized.score == pytest.approx(plain.score + expected, rel=1e-4)
    g_plain, g_pen = greedy(model, memory, limits, 2, 3)[0], greedy(model, memory, limits, 2, 3, coverage_beta=0.7)[0]
    assert g_pen.score == pytest.approx(g_plain.score + expected, rel=1e-4)


def test_a_copy_model_never_emits_unk():
    model, memory = _pointer_model(0.0)
    with torch.no_grad():                                         # generate only, <unk> the clear favourite
        model.decoder.switch.bias.fill_(30.0)
        model.decoder.generator.bias[TextVocab.unk_id] = 10.0
    limits = torch.tensor([4])
    for hyp in (greedy(model, memory, limits, 2, 3)[0], beam_search(model, memory, limits, 2, 3, 3)[0][0]):
        assert hyp.tokens and TextVocab.unk_id not in hyp.tokens
