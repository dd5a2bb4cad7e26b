"""digitrec export: write a checkpoint as ONNX, an ExportedProgram or TorchScript, with metadata."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from digitrec.commands.arguments import add_model_argument
from digitrec.runtime.export import FORMATS, SUFFIXES, format_for

NAME = "export"
HELP = "export a model (ONNX, torch.export or TorchScript) with its preprocessing metadata"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser, "checkpoint to export (default: the shipped model)")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        help=f"export format (default: from the suffix of --out: {', '.join(SUFFIXES)}); "
        "torchscript is deprecated in PyTorch",
    )
    parser.add_argument("--out", metavar="FILE", required=True, help="file to write (replaced atomically)")
    parser.add_argument("--json", action="store_true", help="print one JSON object describing the export")


def run(args: argparse.Namespace) -> int:
    fmt = format_for(args.out, args.format)  # a bad --out suffix fails before loading anything
    # Imported here, not at the top: torch (the [train] extra); `export --help` runs without it
    from digitrec.models.checkpoint import load_checkpoint
    from digitrec.runtime.export import export_model

    checkpoint = load_checkpoint(args.model)
    result = export_model(checkpoint, args.out, fmt)
    for note in result.notes:
        print(f"digitrec export: note: {note}", file=sys.stderr)
    meta = result.metadata
    if args.json:
        print(
            json.dumps(
                {
                    "path": str(result.path),
                    "format": result.format,
                    "bytes": result.size_bytes,
                    "metadata": asdict(meta),
                }
            )
        )
    else:
        temperature = "uncalibrated" if meta.temperature is None else f"temperature {meta.temperature:.3f}"
        print(
            f"wrote {result.path} ({result.format}, {result.size_bytes / 1e6:.2f} MB): {meta.arch}, "
            f"input (B, 1, 28, 28) normalised with mean {meta.mean} std {meta.std}, {temperature}, "
            f"weights sha256 {meta.weights_sha256[:12]}"
        )
    return 0
