"""Make the reading model: a digit classifier fine-tuned on the digits the segmenter cuts out.

A digit cut out of a number is not a clean MNIST digit: a seam through two touching digits leaves
a sliver of the neighbour on one side and takes a bit of the stroke from the other, and the
pen, blur and compression of a photo change the strokes. A model trained on clean MNIST reads
such cut-outs of touching digits about 1.5 points worse than the same digits clean. This script

1. writes numbers of 3-8 digits (benchmarks/cutouts.py: synth.render_number, a
   `--touch-probability` share of neighbouring pairs touching) from MNIST TRAINING-split digits,
   cuts them up with the segmenter and keeps every true digit's 28x28 image, labelled; the same
   from VALIDATION-split digits at the reading benchmark's share of touching pairs, for choosing
   only (never the test set);
2. fine-tunes a copy of `--model` on those cut-outs mixed with as many clean training-split digits
   (the base recipe's augmentation on both), keeping the epoch with the best validation accuracy on
   cut-outs, provided clean validation accuracy stays within 0.1 point of the start;
3. fits a softmax temperature and the reject threshold on the validation cut-outs and saves a
   self-describing checkpoint (meta records the base model, the data, this recipe and the metrics;
   plain MNIST test accuracy is reported, never used to choose).

    # the shipped reading model (~12 min cutting out on 2 cores, ~7 min training; --model is the
    # `best` recipe's seed 2, benchmarks/best_recipe.py):
    python benchmarks/train_reader.py --model runs/best-s2/model.pt --out src/digitrec/weights/reader.pt --jobs 2

Then refit the segment verifier for it (python benchmarks/fit_segmenter.py) and measure with
benchmarks/reading.py.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from digitrec.evaluation.calibration import DEFAULT_BINS, calibrate_logits, probabilities
from digitrec.models.checkpoint import load_checkpoint, save_checkpoint
from digitrec.training.data import load_mnist, stratified_split
from digitrec.training.metrics import evaluate, predict_logits
from digitrec.training.pipeline import Augment
from digitrec.models.inputs import to_model_input
from digitrec.evaluation.calibration import choose_reject_threshold
from digitrec.training.loop import resolve_amp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cutouts import Pair, as_uint8, cached, cut_numbers, in_workers, split_digits  # noqa: E402

CLEAN_TOLERANCE = 0.001  # clean validation accuracy may fall at most this much (0.1 point)
CHUNK = 100  # numbers per worker task


def cut_true_digits(args: tuple[str, int, int, float]) -> tuple[np.ndarray, np.ndarray]:
    """One chunk of numbers -> (true digits' cut-outs uint8 (M, 28, 28), labels (M,)). Runs in a worker."""
    split, n, seed, touch_probability = args
    images, labels = split_digits(split)
    crops, ys = [], []
    for line, truth, digits in cut_numbers(images, labels, n, seed, touch_probability):
        where = {span: k for k, span in enumerate(line.spans)}
        crops += [as_uint8(line.digits28[where[span]]) for span in truth]
        ys += [int(d) for d in digits]
    return np.stack(crops), np.asarray(ys, np.int64)


def cut_out(split: str, n: int, seed: int, touch_probability: float, jobs: int) -> Pair:
    tasks = [(split, min(CHUNK, n - k), seed * 100_003 + k // CHUNK, touch_probability) for k in range(0, n, CHUNK)]
    return in_workers(cut_true_digits, tasks, jobs)


def cut_all(args) -> tuple[Pair, Pair]:
    start = time.time()
    train = cut_out("train", args.numbers, args.seed, args.touch_probability, args.jobs)
    val = cut_out("val", args.val_numbers, args.seed + 1, args.val_touch_probability, args.jobs)
    print(f"cut out {len(train[1])} training and {len(val[1])} validation digits ({time.time() - start:.0f} s)",
          file=sys.stderr)
    return train, val


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="checkpoint to write (e.g. src/digitrec/weights/reader.pt)")
    parser.add_argument("--model", help="checkpoint to start from (default: the shipped model)")
    parser.add_argument("--numbers", type=int, default=12000, help="training-digit numbers to cut up (default 12000)")
    parser.add_argument("--val-numbers", type=int, default=1000, help="validation-digit numbers (choosing only)")
    parser.add_argument("--touch-probability", type=float, default=0.5, help="touching pairs in training numbers")
    parser.add_argument("--val-touch-probability", type=float, default=0.2,
                        help="touching pairs in validation numbers (default 0.2, as benchmarks/reading.py)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=3e-4, help="peak AdamW learning rate, cosine to 0")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=1, help="processes cutting out digits")
    parser.add_argument("--cutouts", help="npz of cut-out digits: written if missing, else read")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    base = load_checkpoint(args.model)
    (cx, cy), (vx, vy) = cached(args.cutouts, lambda: cut_all(args))
    data = load_mnist()
    split = base.meta["split"]
    train_idx, val_idx = stratified_split(data.train_labels, split["n_val"], split["seed"])
    norm = base.normalization
    crops_x, crops_y = torch.from_numpy(cx), torch.from_numpy(cy)
    val_crops_x, val_crops_y = torch.from_numpy(vx), torch.from_numpy(vy)
    clean_x, clean_y = data.train_images[train_idx], data.train_labels[train_idx]
    val_x, val_y = data.train_images[val_idx], data.train_labels[val_idx]
    cfg = base.meta.get("config", {})
    augment = Augment(cfg.get("aug_degrees", 10.0), cfg.get("aug_scale", 0.1), cfg.get("aug_translate", 2.0),
                      cfg.get("aug_elastic", 0.0))
    amp = resolve_amp("auto", torch.device("cpu"))
    model = copy.deepcopy(base.model).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    n_clean = min(len(crops_y), len(clean_y))  # as many clean digits as cut-outs, when there are enough
    per_epoch = (len(crops_y) + n_clean) // args.batch_size
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, total_steps=args.epochs * per_epoch,
                                                    pct_start=0.1)
    generator = torch.Generator().manual_seed(args.seed)

    def scores(net) -> tuple[float, float]:
        net.eval()
        crops = evaluate(net, val_crops_x, val_crops_y, norm, "cpu").accuracy
        clean = evaluate(net, val_x, val_y, norm, "cpu").accuracy
        net.train()
        return crops, clean

    start_crops, start_clean = scores(model)
    print(f"start: validation cut-outs {start_crops:.4f}, clean validation {start_clean:.4f}", file=sys.stderr)
    best = (start_crops, start_clean, 0, copy.deepcopy(model.state_dict()))
    history = []
    started = time.time()
    for epoch in range(1, args.epochs + 1):
        # every cut-out once, and (up to) as many clean digits drawn afresh
        clean_pick = torch.randperm(len(clean_y), generator=generator)[:n_clean]
        xs = torch.cat([crops_x, clean_x[clean_pick]])
        ys = torch.cat([crops_y, clean_y[clean_pick]])
        order = torch.randperm(len(ys), generator=generator)
        for k in range(per_epoch):
            idx = order[k * args.batch_size : (k + 1) * args.batch_size]
            x = augment(to_model_input(xs[idx], norm), generator)  # (B, 1, 28, 28)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp == "bf16"):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), ys[idx], label_smoothing=cfg.get("label_smoothing", 0.0))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        crops_acc, clean_acc = scores(model)
        history.append({"epoch": epoch, "val_cutouts_accuracy": crops_acc, "val_accuracy": clean_acc,
                        "seconds": time.time() - started})
        print(f"epoch {epoch}: validation cut-outs {crops_acc:.4f}, clean validation {clean_acc:.4f} "
              f"({time.time() - started:.0f} s)", file=sys.stderr)
        if clean_acc >= start_clean - CLEAN_TOLERANCE and crops_acc > best[0]:
            best = (crops_acc, clean_acc, epoch, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[3])
    model.eval()
    with torch.no_grad():
        val_logits = predict_logits(model, val_crops_x, norm)
    fit = calibrate_logits(val_logits, val_crops_y)
    temperature = fit.temperature
    # the confidence below which a digit of a number needs review, chosen on the validation cut-outs
    threshold = choose_reject_threshold(probabilities(val_logits, temperature).numpy(), val_crops_y.numpy())
    test = evaluate(model, data.test_images, data.test_labels, norm, "cpu")
    base_test = base.meta.get("metrics", {}).get("test", {}).get("accuracy")
    meta = {
        "config": {**cfg, "recipe": "reader", "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
                   "schedule": "onecycle", "seed": args.seed, "numbers": args.numbers,
                   "val_numbers": args.val_numbers, "touch_probability": args.touch_probability,
                   "val_touch_probability": args.val_touch_probability, "clean_tolerance": CLEAN_TOLERANCE},
        "split": split,
        "reader": {"base_model": os.path.basename(str(base.path)), "base_weights_sha256": base.meta.get("weights_sha256"),
                   "made_by": "benchmarks/train_reader.py " + " ".join(sys.argv[1:] if argv is None else argv),
                   "train_cutouts": int(len(cy)), "val_cutouts": int(len(vy)),
                   "train_cutouts_sha256": hashlib.sha256(cx.tobytes()).hexdigest()},
        "metrics": {"best_epoch": best[2], "val_cutouts_accuracy_start": start_crops, "val_cutouts_accuracy": best[0],
                    "val": {"accuracy": best[1], "n": int(len(val_y))}, "val_accuracy_start": start_clean,
                    "test": test.to_dict(), "base_test_accuracy": base_test, "history": history},
        "calibration": {"method": "temperature scaling, NLL on the validation cut-outs", "temperature": temperature,
                        "ece_before": fit.ece_before, "ece_after": fit.ece_after, "nll_before": fit.nll_before,
                        "nll_after": fit.nll_after, "n_val": fit.n, "n_bins": DEFAULT_BINS,
                        "reject_threshold": threshold},
        "data": base.meta.get("data", {}),
    }
    save_checkpoint(args.out, model, base.arch, base.arch_kwargs, norm, meta)
    print(f"kept epoch {best[2]}: validation cut-outs {best[0]:.4f} (start {start_crops:.4f}), clean validation "
          f"{best[1]:.4f} (start {start_clean:.4f}); temperature {temperature:.3f}, reject threshold "
          f"{threshold:.3f}; plain MNIST test {test.accuracy:.4f} (base {base_test}); wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
