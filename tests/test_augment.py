"""The pen and scanner augmentations change a batch the way they claim, and a model still learns
with them on."""

from __future__ import annotations

import pytest
import torch

from digitrec.errors import ConfigError
from digitrec.models.inputs import Normalization
from digitrec.training.augment import (
    InkAugment,
    gaussian_blur,
    ink_level,
    low_resolution,
    paper_grain,
    stroke_width,
)
from digitrec.training.config import TrainConfig
from digitrec.training.loop import ink_augment, train
from digitrec.training.pipeline import batches


@pytest.fixture(scope="module")
def ink(mnist) -> torch.Tensor:
    """256 training digits as 0-1 ink, (256, 1, 28, 28)."""
    return mnist.train_images[:256].float().div(255).unsqueeze(1)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def mass(x: torch.Tensor) -> torch.Tensor:
    return x.sum(dim=(1, 2, 3))


def centre(x: torch.Tensor) -> torch.Tensor:
    """(B, 2) centre of mass (row, col) of each image's ink."""
    grid = torch.arange(x.shape[-1], dtype=x.dtype)
    m = mass(x).clamp_min(1e-6)
    return torch.stack([(x.sum(3).squeeze(1) * grid).sum(1) / m, (x.sum(2).squeeze(1) * grid).sum(1) / m], 1)


def max_gradient(x: torch.Tensor) -> torch.Tensor:
    """(B,) the steepest step between neighbouring pixels."""
    dx = (x[..., 1:] - x[..., :-1]).abs().amax(dim=(1, 2, 3))
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().amax(dim=(1, 2, 3))
    return torch.maximum(dx, dy)


def high_frequency(x: torch.Tensor) -> torch.Tensor:
    """(B,) energy of the upper half of the spatial frequencies."""
    spectrum = torch.fft.rfft2(x.squeeze(1)).abs() ** 2  # (B, 28, 15)
    fy = torch.fft.fftfreq(x.shape[-2]).abs()[:, None]
    fx = torch.fft.rfftfreq(x.shape[-1])[None, :]
    return (spectrum * ((fy > 0.25) | (fx > 0.25))).sum(dim=(1, 2))


def test_dilation_adds_ink_and_keeps_the_digit_in_place(ink):
    thick = stroke_width(ink, thin=0.0, thick=4.0, p=1.0, generator=gen())
    assert thick.shape == ink.shape and thick.max() <= 1.0
    assert (thick >= ink - 1e-6).all()  # dilation never removes ink
    gain = mass(thick) / mass(ink)
    assert gain.median() > 1.5 and (gain >= 1.0).all()
    assert (centre(thick) - centre(ink)).abs().max() < 1.5  # the digit stays where it was (pixels)
    # the brightest pixel stays on the stroke: within 2 pixels of the original's strong ink
    near = torch.nn.functional.max_pool2d(ink, 5, stride=1, padding=2).flatten(1)
    assert (near.gather(1, thick.flatten(1).argmax(1, keepdim=True)) > 0.9).all()


def test_erosion_thins_and_stroke_width_is_graded(ink):
    thin = stroke_width(ink, thin=1.0, thick=0.0, p=1.0, generator=gen())
    assert (thin <= ink + 1e-6).all() and (mass(thin) < mass(ink)).float().mean() > 0.9
    # a wider range gives more ink on average
    two = mass(stroke_width(ink, 0.0, 2.0, 1.0, gen(1))).mean()
    four = mass(stroke_width(ink, 0.0, 4.0, 1.0, gen(1))).mean()
    assert mass(ink).mean() < two < four


def test_blur_lowers_the_steepest_edge(ink):
    blurred = gaussian_blur(ink, max_sigma=1.5, p=1.0, generator=gen())
    assert blurred.shape == ink.shape
    assert (max_gradient(blurred) < max_gradient(ink)).all()
    assert torch.allclose(mass(blurred), mass(ink), rtol=0.02)  # blur moves ink, does not add it


def test_low_resolution_loses_high_frequencies(ink):
    low = low_resolution(ink, smallest=7, largest=14, p=1.0, generator=gen())
    assert low.shape == ink.shape
    assert (high_frequency(low) < 0.5 * high_frequency(ink)).all()
    assert (centre(low) - centre(ink)).abs().max() < 1.5


def test_pencil_lowers_the_peak_ink(ink):
    pencil = ink_level(ink, lightest=0.3, p=1.0, generator=gen())
    peak = pencil.amax(dim=(1, 2, 3))
    assert (peak >= 0.3 - 1e-6).all() and (peak <= 1.0).all() and peak.median() < 0.8
    light = ink_level(ink, lightest=0.3, p=1.0, generator=gen()).amax(dim=(1, 2, 3))
    assert torch.equal(peak, light)  # the generator decides
    assert (pencil[ink == 0] == 0).all()  # paper stays paper


def test_grain_adds_variance_to_the_paper(ink):
    grained = paper_grain(ink, max_std=0.1, p=1.0, generator=gen())
    paper = ink == 0
    assert grained[paper].var() > 1e-4 and ink[paper].var() == 0
    assert grained.min() >= 0 and grained.max() <= 1


def test_probability_zero_changes_nothing_and_half_touches_about_half(ink):
    for augment in (
        lambda p: stroke_width(ink, 1.0, 4.0, p, gen()),
        lambda p: gaussian_blur(ink, 1.5, p, gen()),
        lambda p: low_resolution(ink, 7, 14, p, gen()),
        lambda p: ink_level(ink, 0.3, p, gen()),
        lambda p: paper_grain(ink, 0.1, p, gen()),
    ):
        assert torch.equal(augment(0.0), ink)
        touched = (augment(0.5) != ink).flatten(1).any(1).float().mean()
        assert 0.3 < touched < 0.7


def test_batches_apply_the_config_switches(mnist):
    images, labels = mnist.train_images[:128], mnist.train_labels[:128]
    norm = Normalization()

    def first(config: TrainConfig) -> torch.Tensor:
        stream = batches(images, labels, 128, norm, ink=ink_augment(config), generator=gen())
        return next(iter(stream))[0]

    plain = first(TrainConfig())
    assert not ink_augment(TrainConfig()).active  # off by default: existing recipes are unchanged
    assert torch.equal(plain, next(iter(batches(images, labels, 128, norm, generator=gen())))[0])
    for switch in (dict(aug_stroke=3.0), dict(aug_blur=1.0), dict(aug_lowres=8), dict(aug_ink=0.3)):
        assert not torch.allclose(first(TrainConfig(**switch)), plain), switch


@pytest.mark.parametrize("bad", [dict(aug_stroke=-1.0), dict(aug_lowres=20), dict(aug_ink=1.0), dict(aug_ink_p=2.0)])
def test_bad_augmentation_settings_are_refused(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        TrainConfig(**bad)


def test_a_short_run_with_every_augmentation_still_learns(mnist, tmp_path):
    config = TrainConfig(
        model="fast_ref_cnn",
        limit_train=2000,
        limit_eval=500,
        batch_size=64,
        epochs=2,
        device="cpu",
        calibrate=False,
        aug_stroke=4.0,
        aug_blur=1.5,
        aug_lowres=8,
        aug_ink=0.3,
        aug_grain=0.05,
    )
    assert ink_augment(config) == InkAugment(stroke=4.0, blur=1.5, lowres=8, ink=0.3, grain=0.05)
    result = train(config, mnist, tmp_path)
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert result.val.accuracy > 0.8  # chance is 0.10
