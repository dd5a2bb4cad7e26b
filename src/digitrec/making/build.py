"""Rebuild the reading files: the reading model, the one-digit checker and the segment verifier.

The steps, each reusing what an earlier (interrupted) run left in the work directory when asked
to resume: cut-outs are cached there, training runs continue from their ``last.pt``, and a file
already written to the output directory is kept.

0. the reading model's base: the `best` recipe's `bn_cnn`, seed 2 (the shipped one's base),
   trained with `digitrec train`'s loop, unless a base checkpoint is given;
1. digits cut out of training-split and validation-split numbers (some written with a marker;
   `digitrec.making.cutouts`);
2. the reading model fine-tuned on them (`digitrec.making.reader`) -> reader.pt;
3. candidates cut out of training-split and validation-split numbers (some written with a marker),
   labelled one digit or not;
4. the one-digit checker trained on them (`digitrec.making.checker`) -> checker.pt;
5. the segment verifier fitted on validation-split numbers read with the new reading model and
   checker (`digitrec.making.verifier_fit`) -> verifier.json;
6. its operating point (when a number is flagged needs_review) chosen on the error-reject curve of
   validation-split numbers read with all three (`digitrec.making.review_fit`) -> verifier.json.

`only` runs some steps alone on the files already in the output directory: ``("review",)``
chooses the operating point again after the models changed.
7. the `.onnx` twin of each checkpoint in the output directory, which inference runs on
   (`digitrec.making.onnx_twins`) -> reader.onnx, checker.onnx (and default.onnx beside a default.pt).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from digitrec.errors import ConfigError
from digitrec.making.checker import CheckerRecipe, train_checker
from digitrec.making.cutouts import Job, Pair, cached, cut_candidates, cut_out, cut_true_digits, split_digits, split_tag
from digitrec.making.onnx_twins import write_onnx_twins
from digitrec.making.reader import ReaderRecipe, fine_tune_reader
from digitrec.making.review_fit import ReviewRecipe, cached_evidence, chunks, fit_review, gather_evidence
from digitrec.making.runs import RunOptions, StepData, train_run
from digitrec.making.verifier_fit import ReadingModels, VerifierRecipe, fit_verifier
from digitrec.reading.verifier import Verifier, load_verifier
from digitrec.training.config import TrainConfig
from digitrec.training.data import Mnist
from digitrec.training.recipes import recipe
from digitrec.training.records import STATE_NAME, EpochRecord

READER_FILE, CHECKER_FILE, VERIFIER_FILE = "reader.pt", "checker.pt", "verifier.json"
STEPS = ("reader", "checker", "verifier", "review")
BASE_RECIPE, BASE_SEED = "best_bn", 2  # the shipped reading model's base: the bn_cnn seed best on validation
BASE_EPOCHS = 30  # what `best_bn` (then called `best`) had when the shipped base was trained (it now has 40)
Log = Callable[[str], None]


@dataclass(frozen=True)
class BuildPlan:
    out: Path  # where reader.pt, checker.pt and verifier.json are written
    work: Path  # cut-out caches and training runs
    reader_base: str | None = None  # None: train it (step 0)
    base_epochs: int | None = None  # None: BASE_EPOCHS, as the shipped base was trained
    checker_base: str | None = None  # None: the shipped default model
    baseline_verifier: Verifier | None = None  # kept unless a refit reads held-out numbers better
    reader: ReaderRecipe = field(default_factory=ReaderRecipe)
    checker: CheckerRecipe = field(default_factory=CheckerRecipe)
    verifier: VerifierRecipe = field(default_factory=VerifierRecipe)
    review: ReviewRecipe = field(default_factory=ReviewRecipe)
    only: tuple[str, ...] = ()  # run these steps alone (on the files already in `out`); () all
    jobs: int = 1  # processes cutting up numbers
    data_dir: str | None = None  # where MNIST is (None: where `load_mnist` looks by default)
    device: str = "auto"
    resume: bool = False


@dataclass(frozen=True)
class Hooks:
    """Where a build reports: stage lines, training epochs, progress bars."""

    log: Log = lambda _: None
    on_epoch: Callable[[str, EpochRecord], None] | None = None
    progress: bool = False

    def epochs(self, stage: str) -> Callable[[EpochRecord], None] | None:
        on_epoch = self.on_epoch
        return None if on_epoch is None else lambda record: on_epoch(stage, record)


def _options(plan: BuildPlan, hooks: Hooks, stage: str) -> RunOptions:
    """How the training run of `stage` (in work/`stage`) runs: resumed when asked and possible."""
    run_dir = plan.work / stage
    resume = plan.resume and (run_dir / STATE_NAME).is_file()
    return RunOptions(
        run_dir=run_dir, device=plan.device, resume=resume, progress=hooks.progress, on_epoch=hooks.epochs(stage)
    )


def reader_base(plan: BuildPlan, data: Mnist, hooks: Hooks) -> str:
    """Step 0: the checkpoint the reading model is fine-tuned from."""
    if plan.reader_base is not None:
        return plan.reader_base
    values = {
        **recipe(BASE_RECIPE),
        "seed": BASE_SEED,
        "epochs": BASE_EPOCHS,
        "calibrate": False,
        "device": plan.device,
        "limit_eval": plan.reader.limit_eval,
    }
    if plan.base_epochs is not None:
        values["epochs"] = plan.base_epochs
    run = _options(plan, hooks, "reader-base")
    hooks.log(f"step 0: training the reading model's base ({BASE_RECIPE} recipe, seed {BASE_SEED}) in {run.run_dir}")
    return str(train_run(TrainConfig.from_dict(values), data, run).checkpoint)


def cutouts(
    plan: BuildPlan, kind: str, split: str, n: int, seed: int, touch: float, source: str | None, pen: float = 0.0
) -> Pair:
    """Cut-outs (`kind` digits or candidates) of `n` numbers (written with a pen up to `pen`
    pixels wider), cached in the work directory."""
    work = cut_true_digits if kind == "digits" else cut_candidates
    marker = f"-pen{pen:g}" if pen else ""
    name = f"{kind}-{split}-{n}-seed{seed}-touch{touch:g}{marker}-split{split_tag(source)}.npz"
    job = Job(
        split=split,
        numbers=n,
        seed=seed,
        touch_probability=touch,
        checkpoint=source,
        data_dir=plan.data_dir,
        pen_widen=pen,
    )
    return cached(plan.work / name, lambda: cut_out(work, job, plan.jobs))


def joined(*pairs: Pair) -> Pair:
    return np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])


def step_data(
    plan: BuildPlan,
    data: Mnist,
    kind: str,
    base: str | None,
    recipe: ReaderRecipe | CheckerRecipe,
    val_seed: int,
    val_touch: float,
) -> tuple[StepData, float]:
    """What the reading model's or the checker's step learns from: `kind` cut out of the recipe's
    training-split numbers and of its validation-split ones (seeded and touching as the step says);
    and the seconds it took to cut them (or read them from the cache)."""
    start = time.time()
    train = cutouts(plan, kind, "train", recipe.numbers, recipe.seed, recipe.touch_probability, base)
    val = cutouts(plan, kind, "val", recipe.val_numbers, val_seed, val_touch, base)
    return StepData(base=base, data=data, train=train, val=val), time.time() - start


def with_marker_numbers(
    plan: BuildPlan,
    inputs: StepData,
    kind: str,
    recipe: ReaderRecipe | CheckerRecipe,
    seeds: tuple[int, int],
    touch: tuple[float, float],
) -> StepData:
    """`inputs` and `kind` cut out of the recipe's numbers written with a marker (`pen_numbers`
    training-split and `pen_val_numbers` validation-split ones, seeded and touching as given), cut
    up by the same segmenter, so thinned as a reading thins them."""
    pen, base = recipe.pen_widen, None if inputs.base is None else str(inputs.base)
    if recipe.pen_numbers:
        marker = cutouts(plan, kind, "train", recipe.pen_numbers, seeds[0], touch[0], base, pen)
        inputs = replace(inputs, train=joined(inputs.train, marker))
    if recipe.pen_val_numbers:
        marker = cutouts(plan, kind, "val", recipe.pen_val_numbers, seeds[1], touch[1], base, pen)
        inputs = replace(inputs, val=joined(inputs.val, marker))
    return inputs


def build_reader(plan: BuildPlan, data: Mnist, base: str, hooks: Hooks) -> dict[str, Any]:
    """Steps 1 and 2 -> out/reader.pt."""
    r = plan.reader
    inputs, seconds = step_data(plan, data, "digits", base, r, r.seed + 1, r.val_touch_probability)
    start = time.time()
    inputs = with_marker_numbers(
        plan, inputs, "digits", r, (r.seed + 2, r.seed + 3), (r.touch_probability, r.val_touch_probability)
    )
    seconds += time.time() - start
    n_train, n_val = len(inputs.train[1]), len(inputs.val[1])
    hooks.log(f"step 1: {n_train} training and {n_val} validation cut-out digits ({seconds:.0f} s)")
    hooks.log(f"step 2: fine-tuning the reading model from {base}")
    return fine_tune_reader(inputs, r, plan.out / READER_FILE, _options(plan, hooks, "reader"))


def build_checker(plan: BuildPlan, data: Mnist, hooks: Hooks) -> dict[str, Any]:
    """Steps 3 and 4 -> out/checker.pt."""
    c, base = plan.checker, plan.checker_base
    inputs, seconds = step_data(plan, data, "candidates", base, c, c.seed + 1000, c.touch_probability)
    start = time.time()
    inputs = with_marker_numbers(
        plan, inputs, "candidates", c, (c.seed + 2, c.seed + 1002), (c.touch_probability, c.touch_probability)
    )
    seconds += time.time() - start
    train, val = inputs.train[1], inputs.val[1]  # the labels: 1 for a digit
    hooks.log(
        f"step 3: {len(train)} training candidates ({train.mean():.1%} digits) and "
        f"{len(val)} validation candidates ({seconds:.0f} s)"
    )
    hooks.log(f"step 4: training the one-digit checker from {base or 'the shipped model'}")
    return train_checker(inputs, c, plan.out / CHECKER_FILE, _options(plan, hooks, "checker"))


def build_verifier(plan: BuildPlan, hooks: Hooks) -> dict[str, Any]:
    """Step 5 -> out/verifier.json, fitted with the reading model and checker just made."""
    hooks.log("step 5: fitting the segment verifier on validation numbers")
    reader, checker = plan.out / READER_FILE, plan.out / CHECKER_FILE
    # analysing a line takes the models, not the verifier: any will do until the fit is made
    placeholder = plan.baseline_verifier or Verifier(bias=0.0, weights={}, review_margin=0.0)
    models = ReadingModels.load(reader, checker, placeholder)
    images, labels = split_digits("val", str(reader), plan.data_dir)
    verifier = fit_verifier(models, images, labels, plan.verifier, plan.baseline_verifier, hooks.log)
    verifier.save(plan.out / VERIFIER_FILE)
    return dict(verifier.fit)


def build_review(plan: BuildPlan, hooks: Hooks) -> dict[str, Any]:
    """Step 6 -> the operating point in out/verifier.json, chosen on validation numbers read with
    out/reader.pt, out/checker.pt and out/verifier.json."""
    files = [plan.out / name for name in (READER_FILE, CHECKER_FILE, VERIFIER_FILE)]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ConfigError(f"choosing the operating point needs {', '.join(missing)}: build them first")
    hooks.log("step 6: choosing when a number needs review, on validation numbers")
    verifier = load_verifier(files[2])
    models = ReadingModels.load(files[0], files[1], verifier)
    threshold = models.reader.reject_threshold
    images, labels = split_digits("val", str(files[0]), plan.data_dir)
    r, tag = plan.review, split_tag(str(files[0]))
    evidence = []
    for n, seed in chunks(r):
        # the cache holds readings, so it is only valid for the models it was made with: in the work
        # directory of one build (a resumed build reuses it; otherwise it is read afresh)
        cache = plan.work / f"review-val-{n}-seed{seed}-touch{r.touch_probability:g}-split{tag}.json"
        if not plan.resume and cache.is_file():
            cache.unlink()
        evidence += cached_evidence(
            cache,
            lambda n=n, seed=seed: gather_evidence(  # type: ignore[misc]
                models, threshold, images, labels, n, seed, r.touch_probability, hooks.log
            ),
        )
    fitted = fit_review(verifier, evidence, threshold, r, hooks.log)
    fitted.save(files[2])
    return dict(fitted.fit["review"]["chosen"])


def build_weights(plan: BuildPlan, data: Mnist, hooks: Hooks = Hooks()) -> dict[str, Any]:
    """Make reader.pt, checker.pt and verifier.json in `plan.out` (or run `plan.only`'s steps on
    the files there); returns what each step recorded (metrics, fit) and where the files are."""
    unknown = [name for name in plan.only if name not in STEPS]
    if unknown:
        raise ConfigError(f"unknown build step {', '.join(unknown)} (known: {', '.join(STEPS)})")
    plan.out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"out": str(plan.out), "work": str(plan.work)}
    steps: list[tuple[str, str, Callable[[], dict[str, Any]]]] = [
        ("reader", READER_FILE, lambda: build_reader(plan, data, reader_base(plan, data, hooks), hooks)),
        ("checker", CHECKER_FILE, lambda: build_checker(plan, data, hooks)),
        ("verifier", VERIFIER_FILE, lambda: build_verifier(plan, hooks)),
        ("review", VERIFIER_FILE, lambda: build_review(plan, hooks)),
    ]
    for name, file, step in steps:
        if plan.only and name not in plan.only:
            continue
        if plan.resume and not plan.only and done(plan.out / file, name):
            hooks.log(f"{name}: {plan.out / file} is already made; kept")
            summary[name] = {"kept": str(plan.out / file)}
            continue
        started = time.time()
        summary[name] = {**step(), "seconds": round(time.time() - started, 1), "file": str(plan.out / file)}
    if not plan.only or any(name in plan.only for name in ("reader", "checker")):  # a checkpoint may have changed
        hooks.log(f"step 7: the .onnx twins of the checkpoints in {plan.out}")
        summary["onnx"] = write_onnx_twins(
            plan.out, plan.data_dir
        )  # remade whole: cheap, and must follow the .pt files
    return summary


def done(file: Path, step: str) -> bool:
    """Has a step already made its file? (The review step's mark is its record in verifier.json.)"""
    if not file.is_file():
        return False
    return step != "review" or "review" in load_verifier(file).fit
