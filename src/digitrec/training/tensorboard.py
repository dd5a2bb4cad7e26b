"""TensorBoard scalars for training runs: one `log_epoch` call per epoch record.

View with ``tensorboard --logdir RUN_DIR``. Train and validation curves share a chart
(``loss/train`` and ``loss/val``), so over- or under-fitting is visible at a glance.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

# Epoch-record key -> TensorBoard tag; keys not listed are logged under their own name.
TAGS = {
    "train_loss": "loss/train",
    "val_loss": "loss/val",
    "train_accuracy": "accuracy/train",
    "val_accuracy": "accuracy/val",
    "lr": "optim/lr",
    "seconds": "time/epoch_seconds",
}


class TensorBoardLogger:
    """Writes event files under `log_dir`; usable as a context manager."""

    def __init__(self, log_dir: str | os.PathLike) -> None:
        # Imported here so importing digitrec never pulls in tensorboard.
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = str(log_dir)
        self._writer = SummaryWriter(log_dir=self.log_dir)

    def log_epoch(self, record: dict[str, Any]) -> None:
        """Log every finite numeric field of `record` at step ``record["epoch"]``.

        Accepts a dict or a dataclass (such as ``train.EpochRecord``).
        """
        if dataclasses.is_dataclass(record) and not isinstance(record, type):
            record = dataclasses.asdict(record)
        step = int(record["epoch"])
        for key, value in record.items():
            if key == "epoch" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                self._writer.add_scalar(TAGS.get(key, key), float(value), global_step=step)
        self._writer.flush()  # one flush per epoch: the dashboard stays live during long runs

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> TensorBoardLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
