"""Named training recipes: `digitrec train --recipe fast|default|best`.

A recipe is a set of TrainConfig overrides; `default` is TrainConfig's own defaults (what
`digitrec train` does with no flags). A config file and explicit flags override the recipe.
Their measured results live in the README, produced by benchmarks/time_to_accuracy.py.
"""

from __future__ import annotations

from typing import Any

from digitrec.errors import ConfigError

# The most accurate single model within ~30 minutes on 2 cores: wide BN net, strong
# augmentation, label smoothing, weight EMA.
BEST: dict[str, Any] = dict(
    model="bn_cnn",
    model_kwargs={"width": 32, "hidden": 128, "dropout": 0.2},
    epochs=30,
    batch_size=128,
    lr=3e-3,
    aug_degrees=15.0,
    aug_scale=0.15,
    aug_translate=2.5,
    aug_elastic=1.0,
    label_smoothing=0.05,
    ema=0.999,
)

RECIPES: dict[str, dict[str, Any]] = {
    # The fastest public recipe (tuomaso/train_mnist_fast), the yardstick for `fast`.
    # As published: float32, default memory format, label smoothing off.
    "reference": dict(
        model="fast_ref_cnn",
        epochs=1,
        batch_size=256,
        lr=0.01,
        betas=(0.7, 0.9),
        schedule="onecycle",
        augment=False,
        label_smoothing=0.0,
        amp="none",
        channels_last=False,
    ),
    # The fastest route to 99.0%: a narrow BN net (about 0.7x the reference's MACs), one OneCycle
    # epoch, bf16 autocast + channels-last (inherited defaults: 2x the images/s on a CPU with
    # native bf16) and label smoothing, which alone adds about 0.15 points after one epoch.
    # Batch 256 at peak lr 0.03 was chosen on validation accuracy (3 seeds): as accurate as batch
    # 128 at lr 0.01 in three quarters of the time; narrower nets were slower (oneDNN prefers
    # channel counts of 16 and up).
    "fast": dict(
        model="fast_bn_cnn",
        model_kwargs={"c1": 16, "c2": 32, "c3": 64, "dropout": 0.0},
        epochs=1,
        batch_size=256,
        lr=0.03,
        augment=False,
        label_smoothing=0.1,
    ),
    # What `digitrec train` does: TrainConfig's defaults.
    "default": {},
    "best": BEST,
    # `best` on the shipped fast_bn_cnn plus the pen and scanner augmentations (issue 16): marker
    # strokes up to 4 pixels wider, blur, scans down to 8 pixels, pencil down to 30% ink, paper
    # grain, each on a quarter of the images (so about a quarter stay clean).
    "any_pen": {
        **BEST,
        "model": "fast_bn_cnn",
        "model_kwargs": {},
        "epochs": 15,
        "aug_stroke": 4.0,
        "aug_blur": 1.5,
        "aug_lowres": 8,
        "aug_ink": 0.3,
        "aug_grain": 0.05,
        "aug_ink_p": 0.25,
    },
}


def recipe(name: str) -> dict[str, Any]:
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return dict(RECIPES[name])
