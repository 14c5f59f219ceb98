"""RLPixTuner's photo-stylization reward (paper eqs. 3-4).

When the goal is a *style* image with arbitrary content, closeness is measured by a style
score instead of PSNR::

    StyleScore_t = sum_i || G_i[I_g] - G_i[I_t] ||_2
                   + lambda_0 || H(I_t^Y) - H(I_g^Y) ||_2 + lambda_1 || H(I_t^UV) - H(I_g^UV) ||_2   (3)

    r_t = StyleScore_t - StyleScore_{t+1} - lambda_2 sum_i || F_i[I_c] - F_i[I_{t+1}] ||_2        (4)

``G_i`` are Gram matrices of VGG-19 features ``F_i`` at ``relu1_1 .. relu4_1`` (N_S = N_C = 4),
``H`` are normalised histograms of the luminance (Y) and chroma (UV) channels, and the paper's
weights are lambda_0 = 100, lambda_1 = 50, lambda_2 = 0.5 (Appendix C.2).

Eq. 4 as printed compares the content features with the *goal*; since a style goal has
unrelated content, the penalty here compares with a content reference ``I_c`` that defaults to
the episode's input image (``content_target="input"``); ``content_target="goal"`` follows the
printed equation literally.

VGG-19's ImageNet weights cannot be downloaded on this project's machines. :func:`vgg19_features`
loads them from the torch hub cache when the file is there and otherwise raises
:class:`VGGWeightsUnavailable` naming the file and where to put it; it never falls back to random
weights. Any feature extractor returning a list of feature maps can be passed instead (the tests
use a small random network).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

#: The paper's weights (Appendix C.2).
LAMBDA_Y, LAMBDA_UV, LAMBDA_CONTENT = 100.0, 50.0, 0.5
#: torchvision's VGG-19 ImageNet weights file, as the torch hub cache names it.
VGG19_FILE = "vgg19-dcbb9e9d.pth"
#: Indices in ``torchvision.models.vgg19().features`` of relu1_1, relu2_1, relu3_1, relu4_1.
VGG19_RELU_X_1 = (1, 6, 11, 20)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class VGGWeightsUnavailable(RuntimeError):
    """VGG-19's pretrained weights are not on this machine (they cannot be downloaded here)."""


class VGGFeatures(nn.Module):
    """Frozen VGG-19 trunk returning the features after relu1_1, relu2_1, relu3_1, relu4_1."""

    def __init__(self, trunk: nn.Sequential, taps: Sequence[int] = VGG19_RELU_X_1) -> None:
        super().__init__()
        self.trunk = trunk[: max(taps) + 1].eval().requires_grad_(False)
        self.taps = set(taps)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, image: Tensor) -> list[Tensor]:
        """``(B, 3, H, W)`` in [0, 1] -> the four feature maps, shallow to deep."""
        x = (image - self.mean) / self.std
        features = []
        for index, layer in enumerate(self.trunk):
            x = layer(x)
            if index in self.taps:
                features.append(x)
        return features


def vgg19_features(weights: str | Path | None = None) -> VGGFeatures:
    """VGG-19 feature extractor with ImageNet weights from ``weights`` or the torch hub cache.

    Raises:
        VGGWeightsUnavailable: the weights file is missing; the message says which file to
            place where.
    """
    import torchvision

    path = Path(weights) if weights else Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE
    if not path.is_file():
        raise VGGWeightsUnavailable(
            f"the stylization reward needs VGG-19's ImageNet weights, which cannot be downloaded here: "
            f"expected {path}. Copy torchvision's {VGG19_FILE} there (or pass weights=PATH); "
            f"ispbench never uses a randomly initialised VGG in its place."
        )
    model = torchvision.models.vgg19(weights=None)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return VGGFeatures(model.features)


def gram(features: Tensor) -> Tensor:
    """Gram matrices ``F F^T / (C H W)``: ``(B, C, H, W) -> (B, C, C)``."""
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def yuv_histograms(image: Tensor, bins: int = 32) -> tuple[Tensor, Tensor]:
    """Normalised histograms of Y and of U, V (BT.601): ``(B, 3, H, W) -> (B, bins), (B, 2 bins)``."""
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"image must have shape (B, 3, H, W), got {tuple(image.shape)}")
    r, g, b = image.clamp(0, 1).unbind(1)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    u = (b - y) * 0.492 + 0.5  # shifted into [0, 1]
    v = (r - y) * 0.877 + 0.5

    def hist(channel: Tensor) -> Tensor:
        index = (channel.clamp(0, 1) * (bins - 1)).round().long().flatten(1)
        counts = torch.zeros(channel.shape[0], bins, dtype=image.dtype, device=image.device)
        counts.scatter_add_(1, index, torch.ones_like(index, dtype=image.dtype))
        return counts / index.shape[1]

    return hist(y), torch.cat([hist(u), hist(v)], dim=1)


def style_score(
    image: Tensor, goal: Tensor, extractor: Callable[[Tensor], list[Tensor]],
    *, lambda_y: float = LAMBDA_Y, lambda_uv: float = LAMBDA_UV,
) -> Tensor:
    """Eq. 3: lower is closer in style. ``(B, 3, H, W), (B, 3, H, W) -> (B,)``."""
    if image.shape != goal.shape:
        raise ValueError(f"image and goal must have the same shape, got {tuple(image.shape)} and {tuple(goal.shape)}")
    gram_term = sum(
        (gram(fi) - gram(fg)).flatten(1).norm(dim=1) for fi, fg in zip(extractor(image), extractor(goal), strict=True)
    )
    (yi, uvi), (yg, uvg) = yuv_histograms(image), yuv_histograms(goal)
    return gram_term + lambda_y * (yi - yg).norm(dim=1) + lambda_uv * (uvi - uvg).norm(dim=1)


def content_distance(image: Tensor, reference: Tensor, extractor: Callable[[Tensor], list[Tensor]]) -> Tensor:
    """``sum_i || F_i[reference] - F_i[image] ||_2`` over the extractor's layers: ``-> (B,)``."""
    return sum((fi - fr).flatten(1).norm(dim=1) for fi, fr in zip(extractor(image), extractor(reference), strict=True))


def stylization_reward(
    current: Tensor, following: Tensor, goal: Tensor, extractor: Callable[[Tensor], list[Tensor]],
    *, content_reference: Tensor | None = None, content_target: str = "input",
    lambda_content: float = LAMBDA_CONTENT,
) -> Tensor:
    """Eq. 4: ``StyleScore(I_t) - StyleScore(I_{t+1}) - lambda_2 * content distance``.

    Args:
        current, following: the images before and after the step, ``(B, 3, H, W)`` in [0, 1].
        goal: the style image.
        content_reference: the episode's input image (required when ``content_target="input"``).
        content_target: ``"input"`` (default, see the module docstring) or ``"goal"`` (eq. 4 as printed).
    """
    if content_target == "input":
        if content_reference is None:
            raise ValueError("content_target='input' needs content_reference (the episode's input image)")
        reference = content_reference
    elif content_target == "goal":
        reference = goal
    else:
        raise ValueError(f"content_target must be 'input' or 'goal', got {content_target!r}")
    with torch.no_grad():
        return (style_score(current, goal, extractor) - style_score(following, goal, extractor)
                - lambda_content * content_distance(following, reference, extractor))
