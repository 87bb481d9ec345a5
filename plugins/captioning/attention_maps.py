"""Pictures of where the decoder looked: the attention over the image grid for each generated word.

Grid cell (r, c) covers the same fraction of the original picture as of the square the model
saw (resizing to a square only stretches), so the grid is upsampled straight onto the original.
Per image: `<n>_<name>.png`, one panel per word over the image, and `<n>_<name>/<t>_<word>.png`,
one picture per word.
"""
from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

DISPLAY = 256      # long side of the pictures, in pixels
END = "</s>"


def _heat(weights: torch.Tensor, grid: int, size: tuple[int, int]) -> np.ndarray:
    """One step's weights (S,) -> a smooth map in [0, 1] of the image's size (H, W)."""
    cells = weights.float().view(1, 1, grid, grid)
    cells = cells / cells.max().clamp(min=1e-12)
    up = torch.nn.functional.interpolate(cells, size=(size[1], size[0]), mode="bicubic", align_corners=False)
    return up.clamp(0, 1)[0, 0].numpy()


def _display(image: Image.Image) -> Image.Image:
    scale = DISPLAY / max(image.size)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                        Image.Resampling.BICUBIC)


def _safe(word: str) -> str:
    return re.sub(r"[^\w-]+", "_", word).strip("_") or "token"


def save_attention_maps(image: Image.Image, words: list[str], attention: torch.Tensor, folder: Path,
                        stem: str) -> list[Path]:
    """Write the overview and the per-word pictures; returns their paths."""
    steps = [(t, w.replace("▁", "")) for t, w in enumerate(words) if w != END and t < attention.size(0)]
    grid = int(round(attention.size(1) ** 0.5))
    if grid * grid != attention.size(1):
        raise ValueError(f"attention over {attention.size(1)} positions is not a square grid")
    picture = _display(image)
    base = np.asarray(picture, dtype=np.float32) / 255.0
    colormap = matplotlib.colormaps["jet"]
    words_dir = folder / stem
    words_dir.mkdir(parents=True, exist_ok=True)
    written = []
    heats = []
    for t, word in steps:
        heat = _heat(attention[t], grid, picture.size)
        heats.append(heat)
        blend = 0.5 * base + 0.5 * colormap(heat)[..., :3]
        path = words_dir / f"{t:02d}_{_safe(word)}.png"
        Image.fromarray((blend * 255).astype(np.uint8)).save(path)
        written.append(path)
    columns = min(5, len(steps) + 1)
    rows = -(-(len(steps) + 1) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    axes.flat[0].imshow(picture)
    axes.flat[0].set_title("input", fontsize=9)
    figure.suptitle(" ".join(w for _, w in steps), fontsize=10)
    for ax, (_, word), heat in zip(axes.flat[1:], steps, heats):
        ax.imshow(picture)
        ax.imshow(heat, cmap="jet", alpha=0.5, vmin=0, vmax=1)
        ax.set_title(word, fontsize=9)
    figure.tight_layout()
    overview = folder / f"{stem}.png"
    figure.savefig(overview, dpi=80)
    plt.close(figure)
    return [overview, *written]
