"""Make the segmenter's one-digit checker: is a candidate cut out of a number exactly one digit?

Reading a number tries many ways of grouping its ink into digits. The digit classifier alone is a
poor judge of a grouping: two touching digits squeezed into a 28x28 box often look like a
confident "0" or "8", and half of a "4" like a "1". The checker is a CNN with two classes (the
architecture of `--model`, default the shipped fast_bn_cnn, started from its layers) that sees the
same 28x28 candidate images and answers "one digit or not"; its log-odds is one of the segment
verifier's features. This script

1. writes numbers of 3-8 digits (synth.render_number, a `--touch-probability` share of neighbouring
   pairs touching) from MNIST TRAINING-split digits (the shipped model's split), segments them
   (segment.cut_line) and labels every candidate by the true segmentation (ownership of atoms,
   as benchmarks/fit_segmenter.py does): 1 when it is one of the true digits, 0 otherwise; numbers
   whose true segmentation is not among the candidates are skipped. The same from VALIDATION-split
   digits, to choose the epoch (never the test set);
2. trains the checker, its convolutions started from the shipped model's, with the two classes
   weighted equally (most candidates are not digits), keeping the epoch with the lowest validation
   loss;
3. saves a self-describing checkpoint (digitrec.checkpoint).

    python benchmarks/train_checker.py --out src/digitrec/weights/checker.pt --jobs 2   # ~15 min on 2 cores

Then refit the segment verifier, which weighs the checker against the other features:
python benchmarks/fit_segmenter.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from digitrec.models.checkpoint import load_checkpoint, save_checkpoint
from digitrec.models import create_model
from digitrec.models.inputs import to_model_input
from digitrec.training.loop import resolve_amp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cutouts import Pair, as_uint8, cached, cut_numbers, in_workers, split_digits  # noqa: E402

CLASSES = ["not one digit", "one digit"]


def cut_candidates(args: tuple[str, int, int, float]) -> tuple[np.ndarray, np.ndarray]:
    """One chunk of numbers -> (candidates uint8 (M, 28, 28), labels (M,) 1 = a true digit).
    Runs in a worker process."""
    split, n, seed, touch_probability = args
    images, labels = split_digits(split)
    crops, ys = [], []
    for line, truth, _ in cut_numbers(images, labels, n, seed, touch_probability):
        true = set(truth)
        crops += [as_uint8(d) for d in line.digits28]
        ys += [int(span in true) for span in line.spans]
    return np.stack(crops), np.asarray(ys, np.int64)


def candidates(split: str, n: int, seed: int, touch_probability: float, jobs: int) -> Pair:
    chunks = [(split, n // jobs + (k < n % jobs), seed + k, touch_probability) for k in range(jobs)]
    return in_workers(cut_candidates, chunks, jobs)


def cut_all(args) -> tuple[Pair, Pair]:
    start = time.time()
    train = candidates("train", args.numbers, args.seed, args.touch_probability, args.jobs)
    val = candidates("val", args.val_numbers, args.seed + 1000, args.touch_probability, args.jobs)
    print(f"cut {len(train[1])} training candidates ({train[1].mean():.1%} digits) and {len(val[1])} validation "
          f"candidates ({time.time() - start:.0f} s)", file=sys.stderr)
    return train, val


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="checkpoint to write (src/digitrec/weights/checker.pt)")
    parser.add_argument("--numbers", type=int, default=2400, help="numbers of training-split digits")
    parser.add_argument("--val-numbers", type=int, default=400, help="numbers of validation digits (choosing only)")
    parser.add_argument("--touch-probability", type=float, default=0.3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-3, help="AdamW peak learning rate (OneCycle)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=2000)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes cutting candidates")
    parser.add_argument("--cache", help="npz of candidates: written if missing, else read")
    parser.add_argument("--model", help="checkpoint whose architecture and layers (all but the last) the checker "
                        "starts from (default: the shipped model)")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    base = load_checkpoint(args.model)
    (tx, ty), (vx, vy) = cached(args.cache, lambda: cut_all(args))
    norm = base.normalization
    train_x, train_y = torch.from_numpy(tx), torch.from_numpy(ty)
    val_x = to_model_input(torch.from_numpy(vx), norm)  # (V, 1, 28, 28)
    val_y = torch.from_numpy(vy)
    model = create_model(base.arch, **{**base.arch_kwargs, "classes": 2})
    own = model.state_dict()
    model.load_state_dict({**own, **{k: v for k, v in base.model.state_dict().items() if v.shape == own[k].shape}})
    weight = torch.tensor([1 / (1 - ty.mean()), 1 / ty.mean()], dtype=torch.float32) / 2  # both classes count alike
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    steps = len(ty) // args.batch_size
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, total_steps=args.epochs * steps)
    generator = torch.Generator().manual_seed(args.seed)
    amp = resolve_amp("auto", torch.device("cpu"))  # bf16 where the CPU has it natively

    def validate() -> dict[str, float]:
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model(val_x[k : k + 1024]) for k in range(0, len(val_y), 1024)])
        model.train()
        pred = logits.argmax(1)
        recall = [float((pred[val_y == c] == c).float().mean()) for c in (0, 1)]
        return {"val_loss": float(F.cross_entropy(logits, val_y, weight=weight)),
                "val_balanced_accuracy": sum(recall) / 2, "val_recall_not_digit": recall[0],
                "val_recall_digit": recall[1]}

    best, history, started = None, [], time.time()
    model.train()
    for epoch in range(1, args.epochs + 1):
        order = torch.randperm(len(ty), generator=generator)
        for k in range(steps):
            idx = order[k * args.batch_size : (k + 1) * args.batch_size]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp == "bf16"):
                logits = model(to_model_input(train_x[idx], norm))
            loss = F.cross_entropy(logits.float(), train_y[idx], weight=weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        scores = {"epoch": epoch, **validate(), "seconds": time.time() - started}
        history.append(scores)
        print(json.dumps(scores), file=sys.stderr)
        if best is None or scores["val_loss"] < best[0]["val_loss"]:
            best = (scores, {k: v.clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[1])
    meta = {
        "class_labels": CLASSES,
        "config": {"recipe": "one-digit checker", "model": base.arch, "epochs": args.epochs, "lr": args.lr,
                   "batch_size": args.batch_size, "schedule": "onecycle", "seed": args.seed,
                   "numbers": args.numbers, "val_numbers": args.val_numbers,
                   "touch_probability": args.touch_probability, "class_weight": weight.tolist()},
        "split": base.meta["split"],
        "checker": {"made_by": "benchmarks/train_checker.py", "started_from": base.path,
                    "train_candidates": int(len(ty)), "train_digits": int(ty.sum()),
                    "val_candidates": int(len(vy)), "val_digits": int(vy.sum())},
        "metrics": {**{k: v for k, v in best[0].items() if k.startswith("val")}, "best_epoch": best[0]["epoch"],
                    "history": history},
        "data": base.meta.get("data", {}),
    }
    save_checkpoint(args.out, model.eval(), base.arch, {**base.arch_kwargs, "classes": 2}, norm, meta)
    print(f"kept epoch {best[0]['epoch']}: validation loss {best[0]['val_loss']:.4f}, balanced accuracy "
          f"{best[0]['val_balanced_accuracy']:.4f}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
