"""Training images/s for one epoch: digitrec's in-memory pipeline vs the classic DataLoader.

Both sides train the same model with the same optimiser and batch size on the same 55,000
training images; only the input pipeline differs:

- classic: torchvision.datasets.MNIST + DataLoader(shuffle=True) + ToTensor/Normalize per sample
  (the pytorch/examples recipe);
- digitrec: one uint8 tensor in memory, batches gathered by index, normalised as a whole.

Repeats alternate the two so that machine noise hits both alike. Run:
    python benchmarks/input_pipeline.py [--repeats 3] [--model fast_ref_cnn] [--limit N]
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from common import machine, mean_std
from torchvision import datasets, transforms

from digitrec.models import create_model
from digitrec.models.inputs import Normalization
from digitrec.training.config import TrainConfig
from digitrec.training.data import load_mnist, locate, split_indices
from digitrec.training.pipeline import batches


def train_epoch(model: torch.nn.Module, stream) -> tuple[int, float]:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    seen, start = 0, time.perf_counter()
    for x, y in stream:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(y)
    return seen, time.perf_counter() - start


def classic_stream(root: Path, indices: list[int], batch_size: int, workers: int):
    norm = Normalization()
    dataset = datasets.MNIST(
        root,
        train=True,
        download=False,
        transform=transforms.Compose([transforms.ToTensor(), transforms.Normalize((norm.mean,), (norm.std,))]),
    )
    subset = torch.utils.data.Subset(dataset, indices)
    return torch.utils.data.DataLoader(subset, batch_size=batch_size, shuffle=True, num_workers=workers)


def torchvision_root() -> Path:
    """torchvision.datasets.MNIST reads uncompressed files from ROOT/MNIST/raw."""
    root = Path(tempfile.mkdtemp(prefix="mnist-tv-"))
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name, path in locate(allow_download=False).items():
        with gzip.open(path) as src, open(raw / name.removesuffix(".gz"), "wb") as dst:
            shutil.copyfileobj(src, dst)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fast_ref_cnn")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers for the classic side")
    parser.add_argument("--limit", type=int, default=None, help="train on the first N images of the split")
    args = parser.parse_args()

    data = load_mnist(allow_download=False)
    defaults = TrainConfig()  # the training split `digitrec train` uses
    train_idx, _ = split_indices(data.train_labels, defaults.n_val, defaults.split_seed)
    train_idx = train_idx[torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(0))][: args.limit]
    root = torchvision_root()
    try:
        rates: dict[str, list[float]] = {"classic DataLoader": [], "digitrec in-memory": []}
        for repeat in range(args.repeats):
            for name in list(rates) if repeat % 2 == 0 else list(reversed(rates)):
                torch.manual_seed(repeat)
                model = create_model(args.model)
                if name.startswith("classic"):
                    stream = classic_stream(root, train_idx.tolist(), args.batch_size, args.workers)
                else:
                    images, labels = data.train_images[train_idx], data.train_labels[train_idx]
                    stream = batches(
                        images,
                        labels,
                        args.batch_size,
                        Normalization(),
                        shuffle=True,
                        generator=torch.Generator().manual_seed(repeat),
                    )
                seen, seconds = train_epoch(model, stream)
                rates[name].append(seen / seconds)
                print(
                    f"  repeat {repeat + 1}: {name:20s} {seen} images in {seconds:.1f}s = {seen / seconds:,.0f} images/s"
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(f"\nmachine: {machine()}")
    print(f"model {args.model}, batch {args.batch_size}, {len(train_idx)} images per epoch, {args.repeats} repeats\n")
    print("| pipeline | training images/s (mean ± std) |\n|---|---|")
    for name, values in rates.items():
        print(f"| {name} | {mean_std(values)} |")
    ratio = statistics.mean(rates["digitrec in-memory"]) / statistics.mean(rates["classic DataLoader"])
    print(f"\nspeed-up: {ratio:.2f}x (target >= 1.5x)")


if __name__ == "__main__":
    main()
