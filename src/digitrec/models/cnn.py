"""Convolutional networks for 28x28 digits."""

from __future__ import annotations

from torch import nn

from digitrec.models.registry import register_model


def _conv_bn(c_in: int, c_out: int, k: int = 3, padding: int = 1) -> list[nn.Module]:
    # bias is redundant before batch norm
    return [nn.Conv2d(c_in, c_out, k, padding=padding, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


@register_model
def seed_cnn(c1: int = 32, c2: int = 64, hidden: int = 128, dropout: float = 0.25) -> nn.Module:
    """The seed's CNN: two conv-ReLU-maxpool blocks, then two fully connected layers."""
    return nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),  # (B, c1, 14, 14)
        nn.Conv2d(c1, c2, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),  # (B, c2, 7, 7)
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(c2 * 7 * 7, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(hidden, 10),
    )


@register_model
def fast_ref_cnn() -> nn.Module:
    """Reference of the fastest public recipe: conv5x5-24, conv3x3-32, fc 800-256-10."""
    return nn.Sequential(
        nn.Conv2d(1, 24, 5),
        nn.MaxPool2d(2),
        nn.ReLU(inplace=True),  # (B, 24, 12, 12)
        nn.Conv2d(24, 32, 3),
        nn.MaxPool2d(2),
        nn.ReLU(inplace=True),  # (B, 32, 5, 5)
        nn.Flatten(),  # (B, 800)
        nn.Linear(32 * 5 * 5, 256),
        nn.ReLU(inplace=True),
        nn.Linear(256, 10),
    )


@register_model
def bn_cnn(width: int = 32, hidden: int = 128, dropout: float = 0.2, classes: int = 10) -> nn.Module:
    """Deeper CNN with batch norm and dropout: 2x(conv-conv-pool), fc head (the `best` recipe).
    `classes` other than 10 makes another judge of 28x28 crops (the segmenter's one-digit checker)."""
    w = width
    return nn.Sequential(
        *_conv_bn(1, w),
        *_conv_bn(w, w),
        nn.MaxPool2d(2),  # (B, w, 14, 14)
        *_conv_bn(w, 2 * w),
        *_conv_bn(2 * w, 2 * w),
        nn.MaxPool2d(2),  # (B, 2w, 7, 7)
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(2 * w * 7 * 7, hidden, bias=False),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(hidden, classes),
    )


@register_model
def fast_bn_cnn(
    c1: int = 32, c2: int = 64, c3: int = 128, dropout: float = 0.1, classes: int = 10, pool_first: bool = False
) -> nn.Module:
    """Fast CNN with batch norm: conv5x5-c1, conv3x3-c2, conv3x3-c3 (unpadded), linear head. The default.
    `classes` other than 10 makes another judge of 28x28 crops (the segmenter's one-digit checker).
    `pool_first` max-pools each pooled conv's output before its batch norm and ReLU, which then
    run on a quarter of the values: on a CPU they, not the convolutions, take most of a training
    step of a net this small (in float32, about 1.5x the images/s)."""

    def block(c_in: int, c_out: int, k: int) -> list[nn.Module]:
        layers = _conv_bn(c_in, c_out, k, padding=0)
        return [layers[0], nn.MaxPool2d(2), *layers[1:]] if pool_first else [*layers, nn.MaxPool2d(2)]

    return nn.Sequential(
        *block(1, c1, 5),  # (B, c1, 12, 12)
        *block(c1, c2, 3),  # (B, c2, 5, 5)
        *_conv_bn(c2, c3, 3, padding=0),  # (B, c3, 3, 3)
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(c3 * 3 * 3, classes),
    )
