"""The image front-end: light augmentation, normalisation, a CNN, and its feature map as a grid of vectors.

The CNN is a compact residual network trained from scratch (`model.cnn = "residual"`), or a
torchvision ResNet whose weights the user keeps as a local file (`model.cnn_weights`); nothing
is ever downloaded. Its feature map is average-pooled to `model.grid` x `model.grid` cells,
so the memory always has grid**2 vectors: the decoder attends over them (Show, Attend and
Tell), and the bridge pools them into the context vector c (Show and Tell).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipelines import UserError

MEAN = (0.485, 0.456, 0.406)     # ImageNet statistics: what torchvision weights expect; harmless from scratch
STD = (0.229, 0.224, 0.225)
BACKBONES = ("resnet18", "resnet34", "resnet50")


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a shortcut (He et al. 2016)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResidualCNN(nn.Module):
    """A stride-2 stem, then three stages of `blocks` residual blocks: width c, 2c, 4c at strides 2, 2, 1.

    Output stride 8 (a 64-pixel image gives an 8x8 map); the full-resolution work is one convolution,
    which keeps it cheap enough to train from scratch on a CPU.
    """

    def __init__(self, channels: int, blocks: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, 2, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU())
        layers, cin = [], channels
        for stage, stride in enumerate((2, 2, 1)):
            cout = channels * 2 ** stage
            layers += [BasicBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1) for i in range(blocks)]
            cin = cout
        self.stages = nn.Sequential(*layers)
        self.output_size = cin

    def forward(self, x: Tensor) -> Tensor:
        return self.stages(self.stem(x))


def _read_weights(path: Path) -> dict[str, Tensor]:
    """A state dict from a .safetensors file or a tensors-only .pth/.pt file (never unpickles code)."""
    if not path.is_file():
        raise UserError(f"model.cnn_weights = {str(path)!r}: file not found; download the backbone's weights "
                        f"once yourself and point to the file (s2s never downloads weights)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserError(f"{path}: cannot read CNN weights ({type(err).__name__}: {err}); "
                        f"give a torchvision state dict saved as .pth or .safetensors") from None
    return state.get("state_dict", state) if isinstance(state, dict) else state


class Backbone(nn.Module):
    """A torchvision ResNet up to its last stage (output stride 32), optionally frozen."""

    def __init__(self, name: str, weights: str, load_weights: bool, freeze: bool):
        super().__init__()
        import torchvision
        net = getattr(torchvision.models, name)(weights=None)
        if load_weights:
            if not weights:
                raise UserError(f"model.cnn = {name!r} needs model.cnn_weights = PATH, a local file with its "
                                f"torchvision weights (e.g. {name}-*.pth); s2s never downloads weights")
            path = Path(weights).expanduser()
            try:
                net.load_state_dict(_read_weights(path))
            except RuntimeError as err:
                raise UserError(f"{path}: these weights do not fit torchvision's {name} "
                                f"({str(err).splitlines()[0]}); give the matching model.cnn") from None
        self.body = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3,
                                  net.layer4)
        self.output_size = net.fc.in_features
        self.frozen = freeze
        if freeze:
            self.body.requires_grad_(False)

    def train(self, mode: bool = True) -> "Backbone":
        super().train(mode)
        if self.frozen:
            self.body.eval()       # frozen batch-norm statistics stay those of the weights file
        return self

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


def augment(images: Tensor, strength: float = 1.0) -> Tensor:
    """Per-image small zoom and shift (no flips or rotations: captions say left/right/above), brightness and contrast.

    Colours keep their hue, since captions name them.
    """
    b = images.size(0)
    scale = 1.0 + (torch.rand(b) * 2 - 1) * 0.08 * strength
    shift = (torch.rand(b, 2) * 2 - 1) * 0.08 * strength
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    brightness = 1.0 + (torch.rand(b, 1, 1, 1) * 2 - 1) * 0.15 * strength
    contrast = 1.0 + (torch.rand(b, 1, 1, 1) * 2 - 1) * 0.15 * strength
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    return ((out - mean) * contrast.to(out) + mean * brightness.to(out)).clamp(0.0, 1.0)


class ImageFrontend(nn.Module):
    """uint8 images (B, 3, H, W) -> grid vectors (B, grid*grid, D), every image having all grid*grid cells."""

    def __init__(self, model: dict, augment_training: bool, load_weights: bool):
        super().__init__()
        if model["cnn"] == "residual":
            self.cnn: nn.Module = ResidualCNN(model["cnn_channels"], model["cnn_blocks"])
        else:
            self.cnn = Backbone(model["cnn"], model["cnn_weights"], load_weights, model["cnn_freeze"])
        self.grid = model["grid"]
        self.pool = nn.AdaptiveAvgPool2d(self.grid)
        self.dropout = nn.Dropout(model["dropout"])
        self.augment_training = augment_training
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)
        self.output_size = self.cnn.output_size

    def feature_map(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) uint8 -> pooled feature map (B, D, grid, grid)."""
        x = images.to(self.mean.dtype) / 255.0
        if self.training and self.augment_training:
            x = augment(x)
        return self.pool(self.cnn((x - self.mean) / self.std))

    def forward(self, images: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        features = self.feature_map(images).flatten(2).transpose(1, 2)     # (B, grid*grid, D), row-major cells
        return self.dropout(features), lengths
