"""`hf:` data specs: a Hugging Face dataset by name (or a local dataset folder), one split of it."""
from __future__ import annotations

import datasets

from .errors import UserError

PREFIX = "hf:"


def is_hub_spec(spec: str) -> bool:
    return spec.startswith(PREFIX)


def load_hub(spec: str, split: str) -> datasets.Dataset:
    """`hf:NAME[:CONFIG][@SPLIT]`; the split defaults to the pipeline's split name (train/validation/test)."""
    body = spec[len(PREFIX):]
    body, _, split_name = body.partition("@")
    name, _, config = body.partition(":")
    try:
        return datasets.load_dataset(name, config or None, split=split_name or split)
    except Exception as err:  # offline, unknown name, unknown split: all user-fixable
        raise UserError(f"{spec}: could not load the Hugging Face dataset ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''}); check the name and split, "
                        f"or that it is in the local cache when offline") from None
