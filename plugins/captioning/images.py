"""Decoding images with Pillow into small uint8 tensors, cached in memory for the whole process.

Every image becomes RGB (grayscale, RGBA, palette and CMYK images are converted; transparent
pixels are laid over white), is turned upright by its EXIF orientation, and is resized to a
square of `size` pixels (the whole picture is kept, so a caption's "on the left" stays true).
A file that is missing, unreadable or truncated raises `BadImage` naming it.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class BadImage(Exception):
    """An image that cannot be used; the message names the file and why."""


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB; transparency (RGBA, LA, palette with a transparent colour) over white."""
    image = ImageOps.exif_transpose(image)
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def open_rgb(path: Path) -> Image.Image:
    """The fully decoded RGB image at `path`, or `BadImage`."""
    if not path.exists():
        raise BadImage(f"{path}: image file not found")
    try:
        with Image.open(path) as image:
            image.load()            # decodes everything: truncated files fail here
            return to_rgb(image)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise BadImage(f"{path}: unreadable or truncated image ({type(err).__name__}: {err})") from None


def image_tensor(image: Image.Image, size: int) -> torch.Tensor:
    """RGB image -> uint8 tensor (3, size, size)."""
    resized = image.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0)
    return torch.from_numpy(np.asarray(resized, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


class ImageCache:
    """Decoded, resized images by (key, size); keys are file paths or names given to in-memory images."""

    def __init__(self) -> None:
        self._images: dict[tuple[str, int], torch.Tensor] = {}

    def get(self, key: str, size: int) -> torch.Tensor:
        found = self._images.get((key, size))
        if found is None:
            found = self._images[(key, size)] = image_tensor(open_rgb(Path(key)), size)
        return found

    def put(self, key: str, size: int, image: Any) -> torch.Tensor:
        """Cache an image that has no file under `key`: a Pillow image, or a `datasets` Image value {"bytes": ...}."""
        if isinstance(image, dict) and image.get("bytes"):
            try:
                image = Image.open(io.BytesIO(image["bytes"]))
                image.load()
            except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
                raise BadImage(f"{key}: unreadable or truncated image ({type(err).__name__}: {err})") from None
        if not isinstance(image, Image.Image):
            raise BadImage(f"{key}: not an image ({type(image).__name__})")
        tensor = self._images[(key, size)] = image_tensor(to_rgb(image), size)
        return tensor

    def __len__(self) -> int:
        return len(self._images)


CACHE = ImageCache()
