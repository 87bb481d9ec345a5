"""A split turned into model inputs: encoded sources and targets with their lengths."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import datasets
import torch
from torch import Tensor

from . import copy as pointer
from .task import SourceSide, TargetSide, pad_ids


@dataclass
class EncodedSplit:
    sources: list[Any]
    targets: list[Any]
    source_lengths: list[int]
    target_lengths: list[int]
    references: list[list[str]]
    raw_sources: list[Any]
    raw_targets: list[Any] = field(default_factory=list)
    copy_sources: list[pointer.CopySource] | None = None   # model.copy: sources in the extended vocabulary
    copy_targets: list[list[int]] | None = None            # model.copy: targets with copyable OOVs' ids

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
    split = EncodedSplit(pick(sources), pick(targets), pick(src_len), pick(tgt_len), pick(references), pick(raw_sources),
                         pick(list(data["target"])))
    return split, len(sources) - len(keep)


def add_copy(split: EncodedSplit, source: SourceSide, target: TargetSide) -> None:
    """Extended-vocabulary ids for copy (model.copy): each source's OOV tokens get temporary ids, and target
    tokens that are <unk> in the vocabulary but occur in their source take those ids (so copying them is learned)."""
    split.copy_sources = pointer.extend_sources(source, target, split.raw_sources, split.sources)
    split.copy_targets = pointer.extend_targets(target, split.raw_targets, split.targets, split.copy_sources)


def make_batch(split: EncodedSplit, index: list[int], source: SourceSide, target: TargetSide,
               bos: int = 2) -> dict[str, Any]:
    """Padded tensors for the examples `index`: source, lengths, and target input/output (or labels);
    `tokens` counts the targets the loss sums over (known here, so reading it never waits for a GPU)."""
    src, lengths = source.collate([split.sources[i] for i in index])
    batch: dict[str, Any] = {"source": src, "lengths": lengths}
    if target.kind == "label":
        batch["labels"] = torch.tensor([split.targets[i] for i in index], dtype=torch.long)
        batch["tokens"] = len(index)
    else:
        targets = split.targets if split.copy_targets is None else split.copy_targets
        out = pad_ids([targets[i] for i in index])
        if split.copy_sources is not None:
            batch["copy_ids"], batch["extra_vocab"] = pointer.collate([split.copy_sources[i] for i in index])
        batch["target_in"] = torch.cat([torch.full((len(index), 1), bos, dtype=torch.long), out[:, :-1]], dim=1)
        batch["target_out"] = out
        batch["tokens"] = sum(len(targets[i]) for i in index)
    return batch
