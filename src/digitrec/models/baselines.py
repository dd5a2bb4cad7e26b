"""Non-convolutional baselines: what a CNN has to beat."""

from __future__ import annotations

from torch import nn

from digitrec.models.registry import register_model


@register_model
def linear() -> nn.Module:
    """Linear baseline: multinomial logistic regression on the 784 pixels."""
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))  # (B, 1, 28, 28) -> (B, 10)


@register_model
def mlp(hidden: int = 256, depth: int = 2, dropout: float = 0.2) -> nn.Module:
    """MLP: `depth` hidden layers of `hidden` units with ReLU and dropout."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = 28 * 28
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        width = hidden
    return nn.Sequential(*layers, nn.Linear(width, 10))
