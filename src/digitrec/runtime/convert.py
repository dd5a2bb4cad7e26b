"""The model in inference form, and that form as ONNX bytes: what exporting and serving share.

The model is exported and served in inference form: eval mode, BatchNorm folded into the
preceding convolution / linear layer (`torch.fx.experimental.optimization.fuse`, a float-rounding-
level change, checked by the parity tests) and a dynamic batch dimension, so one graph serves a
single image and a batch of thousands alike. ONNX uses the dynamo exporter (`torch.onnx.export(...,
dynamo=True)`, the only one PyTorch still develops).
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from digitrec import __version__
from digitrec.models.checkpoint import Checkpoint
from digitrec.runtime.metadata import INPUT_NAME, OUTPUT_NAME, ExportMetadata, metadata_for

_EXAMPLE_BATCH = 2  # export-time batch; 2, not 1, so the exporter cannot specialise the batch dim


def inference_model(model: nn.Module, device: torch.device | str = "cpu") -> nn.Module:
    """A copy of `model` on `device`, eval mode, BatchNorm folded into the preceding conv/linear.

    Folding needs the model to be traceable by torch.fx; a model that is not stays unfolded
    (same answers, a little slower).
    """
    from torch.fx.experimental.optimization import fuse

    model = copy.deepcopy(model).to(device).eval()
    try:
        return fuse(model).eval()
    except Exception:  # noqa: BLE001 - fx cannot trace every model; folding is only an optimisation
        return model


def prepare(checkpoint: Checkpoint) -> tuple[nn.Module, ExportMetadata]:
    """The inference-form CPU model to export and the metadata that describes it."""
    model = inference_model(checkpoint.model)
    folded = not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    return model, replace(metadata_for(checkpoint), batchnorm_folded=folded)


def example_input() -> torch.Tensor:
    return torch.zeros(_EXAMPLE_BATCH, 1, 28, 28)  # (B, 1, 28, 28); values do not matter for tracing


def batch_dim() -> dict[int, Any]:
    """The dynamic batch dimension of the one input, for torch.export and the ONNX exporter."""
    return {0: torch.export.Dim("batch", min=1)}


def onnx_bytes(model: nn.Module, metadata: ExportMetadata) -> bytes:
    """Serialized ONNX model (dynamo exporter, dynamic batch) with `metadata` in metadata_props."""
    import onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter chatter, not actionable by a user
        program = torch.onnx.export(
            model,
            (example_input(),),
            dynamo=True,
            dynamic_shapes=(batch_dim(),),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            optimize=True,
            verbose=False,
        )
    if program is None:  # only the legacy exporter (dynamo=False) returns nothing
        raise RuntimeError("torch.onnx.export(dynamo=True) returned no ONNX program")
    proto = program.model_proto
    del proto.metadata_props[:]
    for key, value in metadata.to_props().items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name, proto.producer_version = "digitrec", __version__
    proto.doc_string = "digitrec digit classifier: (B, 1, 28, 28) normalised float32 -> (B, 10) logits"
    onnx.checker.check_model(proto)
    return proto.SerializeToString()
