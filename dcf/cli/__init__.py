"""The ``dcf`` command: one entry point, one module per subcommand."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from dcf import __version__
from dcf.cli import convert, data, evaluate, export, models, predict, serve, train, visualize

# Each subcommand module offers add_parser(subparsers) and run(args) -> exit code.
SUBCOMMANDS = (serve, predict, visualize, models, data, train, evaluate, export, convert)

EPILOG = """\
examples:
  dcf serve                                    serve the bundled demo model on http://127.0.0.1:8000
  dcf predict clip.mp4                         labels of a local video (demo model)
  dcf visualize clip.mp4 --out vis.png         its correlation field drawn as motion
  dcf models                                   parameters and multiply-adds (paper Table 3)
  dcf data synth --out data/synth --seed 0 --videos-per-class 50
  dcf train --config configs/demo.toml         train (add --resume to continue)
  dcf eval --checkpoint runs/demo/best.safetensors --data data/synth --split val
  dcf export onnx --checkpoint demo --out demo.onnx     ONNX with the custom correlation node
  dcf export verify --checkpoint demo --onnx demo.onnx  parity with PyTorch
  dcf convert --from pytorchvideo X3D_S.pyth --arch x3d_s_dcf --out x3d_s_dcf.safetensors

Run 'dcf COMMAND --help' for the options of a command.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dcf",
        description="Dense Correlation Fields for video action recognition: models, training, "
        "export and serving.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"dcf {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.run(args))
    # Bad input or a missing optional dependency (e.g. TensorRT): one line, no traceback.
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as exc:
        print(f"dcf {args.command}: error: {exc}", file=sys.stderr)
        return 2
