"""CLI subcommands, one module each; `COMMANDS` is the order shown in `digitrec --help`."""

from digitrec.commands import (
    build_default,
    build_marks,
    build_weights,
    calibrate,
    compare,
    evaluate,
    export,
    predict,
    read,
    serve,
    train,
)

COMMANDS = [
    train,
    evaluate,
    compare,
    calibrate,
    export,
    predict,
    read,
    serve,
    build_weights,
    build_marks,
    build_default,
]
