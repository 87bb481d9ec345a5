"""A split turned into model inputs: encoded sources and targets with their lengths."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import datasets
import torch
from torch import Tensor

from .task import SourceSide, TargetSide, pad_ids


@dataclass
class EncodedSplit:
    sources: list[Any]
    targets: list[Any]
    source_lengths: list[int]
    target_lengths: list[int]
    references: list[list[str]]
    raw_sources: list[Any]

    def __len__(self) -> int:
        return len(self.sources)


def encode_split(data: datasets.Dataset, source: SourceSide, target: TargetSide, where: str,
                 max_length: int = 0) -> tuple[EncodedSplit, int]:
    """Encode a split; with `max_length`, drop pairs longer than it. Returns the split and the number dropped."""
    raw_sources = list(data["source"])
    sources = source.encode(raw_sources)
    targets = target.encode(list(data["target"]), where=where) if target.kind == "label" else target.encode(list(data["target"]))
    if "references" in data.column_names:
        references = [list(r) for r in data["references"]]
    else:
        references = [[str(t)] for t in data["target"]]
    src_len = [source.length(s) for s in sources]
    tgt_len = [1 if target.kind == "label" else len(t) for t in targets]
    keep = list(range(len(sources)))
    if max_length:
        keep = [i for i in keep if src_len[i] <= max_length and tgt_len[i] <= max_length]
    pick = lambda xs: [xs[i] for i in keep]
    split = EncodedSplit(pick(sources), pick(targets), pick(src_len), pick(tgt_len), pick(references), pick(raw_sources))
    return split, len(sources) - len(keep)


def make_batch(split: EncodedSplit, index: list[int], source: SourceSide, target: TargetSide,
               bos: int = 2) -> dict[str, Tensor]:
    """Padded tensors for the examples `index`: source, lengths, and target input/output (or labels)."""
    src, lengths = source.collate([split.sources[i] for i in index])
    batch = {"source": src, "lengths": lengths}
    if target.kind == "label":
        batch["labels"] = torch.tensor([split.targets[i] for i in index], dtype=torch.long)
    else:
        out = pad_ids([split.targets[i] for i in index])
        batch["target_in"] = torch.cat([torch.full((len(index), 1), bos, dtype=torch.long), out[:, :-1]], dim=1)
        batch["target_out"] = out
    return batch
