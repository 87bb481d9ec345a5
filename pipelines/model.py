"""Model assembly: front-end -> RNN encoder -> bridge -> decoder (N->M, 1->N) or a classification head (N->1)."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .bridge import Bridge
from .ctc import CTCHead
from .decoder import Decoder, Memory
from .encoder import RNNEncoder, TextEmbedding
from .encoder_lm import EncoderLM
from .errors import UserError


class Encoder(nn.Module):
    """Front-end, RNN and bridge: raw source tensors -> the decoder's `Memory`.

    With `model.encoder = "none"` there is no RNN: the memory is the front-end's vectors (e.g. a CNN
    grid) projected to `model.hidden` by tanh(W x + b), and the bridge pools them (there is no final state).
    """

    def __init__(self, frontend: nn.Module, model: dict, with_attention: bool):
        super().__init__()
        self.frontend = frontend
        if model["encoder"] == "none":
            self.rnn, self.project = None, nn.Linear(frontend.output_size, model["hidden"])
        else:
            self.rnn = RNNEncoder(frontend.output_size, model["hidden"], model["layers"], model["cell"],
                                  model["bidirectional"], model["dropout"])
        self.bridge = Bridge(model["bridge"], model["hidden"], model["layers"], model["cell"] == "lstm", model["pool"])
        self.use_init = model["context"] in ("init", "both")
        self.output_size = model["hidden"]

    def forward(self, source: Tensor, lengths: Tensor) -> Memory:
        features, lengths = self.frontend(source, lengths)
        if self.rnn is None:
            states, final = torch.tanh(self.project(features)), None
        else:
            states, final = self.rnn(features, lengths)
        mask = torch.arange(states.size(1), device=states.device).unsqueeze(0) < lengths.to(states.device).unsqueeze(1)
        init, context = self.bridge(states, mask, final)
        return Memory(states, None, mask, context, init if self.use_init else None)


class Seq2Seq(nn.Module):
    """Sequence output (translation, summarization, captioning, speech recognition)."""

    def __init__(self, frontend: nn.Module, model: dict, vocab_size: int, pad_id: int = 0, ctc: bool = False):
        super().__init__()
        self.encoder = Encoder(frontend, model, model["attention"] != "none")
        # Joint CTC head (train.ctc_weight > 0); absent otherwise, so checkpoints without it still load.
        self.ctc = CTCHead(self.encoder.output_size, vocab_size) if ctc else None
        self.decoder = Decoder(vocab_size, model["embedding"], model["hidden"], model["layers"], model["cell"],
                               model["dropout"], model["attention"], model["context"], model["input_feeding"],
                               self.encoder.output_size, model["tie_embeddings"], pad_id,
                               copy=model["copy"], coverage=model["coverage"])

    def encode(self, source: Tensor, lengths: Tensor) -> Memory:
        memory = self.encoder(source, lengths)
        if self.ctc is not None:
            self.ctc.observe(memory.states, memory.mask)
        if self.decoder.attention is not None:
            memory.keys = self.decoder.attention.keys(memory.states)
        return memory

    def forward(self, source: Tensor, lengths: Tensor, target_in: Tensor, teacher_forcing: float = 1.0,
                copy_ids: Tensor | None = None, extra_vocab: int = 0, gold: Tensor | None = None,
                smoothing: float = 0.0) -> tuple[Tensor, Tensor | None]:
        """Logits and attention; given `gold`, the summed token loss in the logits' place (Decoder.forward).
        With model.copy, `copy_ids`/`extra_vocab` are the batch's extended source ids (see copy.py)."""
        memory = self.encode(source, lengths)
        memory.copy_ids, memory.extra_vocab = copy_ids, extra_vocab
        return self.decoder(target_in, memory, teacher_forcing, gold, smoothing)


class Classifier(nn.Module):
    """One label per input (N->1): Y = softmax(V c + b) on the bridge's context c.

    With `lm` (train.lm_weight > 0) it also carries language-model heads on the encoder states
    (see encoder_lm.py); in training, forward hands them the batch, and the trainer adds their loss.
    With `more_frontends` (model.ensemble > 1) it holds that many more independently initialised
    members (front-end, encoder, bridge, head), trained side by side on the same batches, each on its
    own loss: forward gives every member's logits (B, members, C) in training, and the log of their
    mean probability (B, C) in evaluation, so validation, `best` and prediction score the ensemble.
    """

    def __init__(self, frontend: nn.Module, model: dict, num_classes: int, lm: bool = False,
                 more_frontends: list[nn.Module] | tuple = ()):
        super().__init__()
        self.encoder = Encoder(frontend, model, False)
        self.dropout = nn.Dropout(model["dropout"])
        self.head = nn.Linear(self.encoder.output_size, num_classes)
        self.others = nn.ModuleList(Classifier(f, model, num_classes) for f in more_frontends) if more_frontends else None
        self.lm = None
        if lm:
            if not isinstance(frontend, TextEmbedding) or self.encoder.rnn is None:
                raise UserError("train.lm_weight needs a text source and an RNN encoder (model.encoder = \"rnn\")")
            if model["bidirectional"] and model["layers"] > 1:
                raise UserError("train.lm_weight needs model.layers = 1 with a bidirectional encoder (a second layer "
                                "would let the forward states see the word they predict) or model.bidirectional = false")
            if more_frontends:
                raise UserError("train.lm_weight works with one model; set model.ensemble = 1")
            self.lm = EncoderLM(model["hidden"], frontend.embed.num_embeddings, model["bidirectional"])

    def forward(self, source: Tensor, lengths: Tensor) -> Tensor:
        memory = self.encoder(source, lengths)
        if self.lm is not None and self.training:
            self.lm.observe(source, memory.states, memory.mask)
        logits = self.head(self.dropout(memory.context))
        if self.others is None:
            return logits
        members = torch.stack([logits, *(m(source, lengths) for m in self.others)], dim=1)
        if self.training:
            return members
        return torch.logsumexp(torch.log_softmax(members.float(), dim=-1), dim=1) - math.log(members.size(1))


def init_uniform(net: nn.Module, scale: float) -> None:
    """Draw the weights of every embedding, linear and RNN layer from U(-scale, scale) (OpenNMT-py's
    `param_init`); padding rows stay zero.

    Why: PyTorch's defaults draw embeddings from N(0, 1), about 17x the size of U(-0.1, 0.1), so Adam,
    whose steps are ~lr in absolute size, takes far longer to reshape them, and the RNN and output
    layers start with bounds between 0.04 and 0.09. On Multi30k de->en in the peers' shape, uniform
    +-0.1 cut validation perplexity at step 1000 from 31.8 to 23.6 (valid BLEU 12.1 -> 17.7).
    A non-text front-end (a CNN with pretrained weights, an audio front-end) keeps its own
    initialisation, and bare parameters that start at zero by design (coverage scale, pooling query)
    are left alone.
    """
    keep = set()   # the modules of every non-text front-end (an ensemble has one per member)
    for encoder in (m for m in net.modules() if isinstance(m, Encoder)):
        if not isinstance(encoder.frontend, TextEmbedding):
            keep |= set(encoder.frontend.modules())
    with torch.no_grad():
        for module in net.modules():
            if module in keep or not isinstance(module, (nn.Embedding, nn.Linear, nn.RNNBase)):
                continue
            for weight in module.parameters(recurse=False):
                weight.uniform_(-scale, scale)
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()
