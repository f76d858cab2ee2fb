"""Ablation in the spirit of the paper's Table 1, on the synthetic motion dataset.

Trains the same narrow X3D-XS four times with the demo recipe (configs/demo.toml) and reports
top-1 on a test split generated with a seed no run has seen:

  backbone      no DCF blocks
  +correlation  DCF blocks after stages 2-4 with L = 1 (adjacent frames), no pyramid
  +long-term    L = (2, 2, 1), no pyramid
  +pyramid      L = (2, 2, 1) with the spatial pyramid (the full DCF)

    python -m bench.ablation_synthetic --data data/synth --epochs 36   # writes bench/results/ablation_synthetic.md
    python -m bench.ablation_synthetic --data data/synth --epochs 36 --resume   # after it was stopped

Each variant trains in OUT/e<epochs>/<variant>. A finished variant leaves its test result there
(ablation.json); --resume reuses finished variants and continues an unfinished one from its last
epoch, so a run can be spread over several sittings. Training time is the sum of the epoch times
in metrics.jsonl, so it does not count the pauses.
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from bench.common import machine_description, write_results
from dcf._io import atomic_write_bytes
from dcf.checkpoint import checkpoint_of, load_checkpoint
from dcf.data.datasets import ClipDataset, collate, read_dataset
from dcf.training.config import load_config
from dcf.training.engine import evaluate, read_metrics, train

VARIANTS: dict[str, tuple[str, dict[str, object] | None]] = {
    "backbone": ("x3d_xs", None),
    "+correlation": ("x3d_xs_dcf", {"stages": [2, 3, 4], "temporal_ranges": [1, 1, 1], "pyramid": False}),
    "+long-term": ("x3d_xs_dcf", {"stages": [2, 3, 4], "temporal_ranges": [2, 2, 1], "pyramid": False}),
    "+pyramid": ("x3d_xs_dcf", {"stages": [2, 3, 4], "temporal_ranges": [2, 2, 1], "pyramid": True}),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=Path("configs/demo.toml"))
    parser.add_argument(
        "--data", default="data/synth", help="synthetic dataset with train, val and test splits"
    )
    parser.add_argument(
        "--epochs", type=int, default=36, help="epochs per variant (the demo recipe's length)"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"), help="runs directory")
    parser.add_argument(
        "--resume", action="store_true", help="reuse finished variants, continue an unfinished one"
    )
    parser.add_argument(
        "--results", type=Path, default=Path(__file__).parent / "results" / "ablation_synthetic.md"
    )
    args = parser.parse_args()

    rows = []
    for name, (architecture, dcf) in VARIANTS.items():
        out = args.out / f"e{args.epochs}" / name.strip("+")
        result_path = out / "ablation.json"
        if args.resume and result_path.exists():
            result = json.loads(result_path.read_text(encoding="utf-8"))
            print(f"{name}: finished earlier, {result}", flush=True)
        else:
            result = _run_variant(args, name, architecture, dcf, out)
            atomic_write_bytes(result_path, json.dumps(result).encode())
            print(json.dumps(result), flush=True)
        rows.append(result)

    lines = [
        "# Ablation on the synthetic motion dataset (in the spirit of the paper's Table 1)",
        "",
        f"Machine: {machine_description()}. Date: {datetime.date.today().isoformat()}.",
        f"Command: `python -m bench.ablation_synthetic --data {args.data} --epochs {args.epochs}`, recipe "
        f"`{args.config}` otherwise. Top-1/top-5 on the `test` split (a seed no run saw), best-val checkpoint, "
        "1 clip x centre crop. One training run per row: differences of a few points are within run-to-run noise.",
        "",
        "| variant | params | test top-1 (%) | test top-5 (%) | training time (min) |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['variant']} | {r['params'] / 1e6:.2f}M | {r['top1']:.1f} | {r['top5']:.1f} | {r['minutes']:.1f} |"
        for r in rows
    ]
    write_results(args.results, lines)


def _run_variant(
    args: argparse.Namespace, name: str, architecture: str, dcf: dict[str, object] | None, out: Path
) -> dict[str, object]:
    """Trains one variant (continuing its last epoch with --resume) and tests its best checkpoint."""
    base = load_config(args.config, [f'data.root="{args.data}"'])
    kwargs = dict(base.model.kwargs)
    if dcf is not None:
        kwargs["dcf"] = dcf
    overrides = [
        f'data.root="{args.data}"',
        f"optim.epochs={args.epochs}",
        f'model.architecture="{architecture}"',
        f'run.out="{out}"',
        f"model.kwargs={_toml_inline(kwargs)}",
    ]
    train(load_config(args.config, overrides), resume=args.resume, progress=False)
    model = load_checkpoint(out / "best.safetensors")
    spec = checkpoint_of(model).input_spec
    test = ClipDataset(read_dataset(args.data, "folder", "test"), spec, train=False)
    result = evaluate(
        model, DataLoader(test, batch_size=16, num_workers=1, collate_fn=collate), torch.device("cpu")
    )
    return {
        "variant": name,
        "epochs": args.epochs,
        "params": sum(p.numel() for p in model.parameters()),
        "top1": result.top1,
        "top5": result.top5,
        "minutes": sum(e["epoch_s"] for e in read_metrics(out / "metrics.jsonl")) / 60,
    }


def _toml_inline(value: object) -> str:
    """A value in TOML inline syntax (dicts, lists, numbers, booleans, strings)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_inline(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_inline(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


if __name__ == "__main__":
    main()
