"""Parity of exported models with PyTorch, against written tolerances.

Each exported model runs on the same inputs as the PyTorch model it came from: fresh random clips
(another seed than the one the export traced with; other frame counts and sizes where the file
allows them) and a real decoded video clip. For every (runtime, input) pair we report the largest
absolute logit error, the largest error relative to the largest reference logit, and top-1
agreement, and pass or fail it against :data:`TOLERANCES` for the model's precision.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dcf.data.spec import InputSpec
from dcf.data.synthetic import render_video, write_mp4
from dcf.data.video import open_video
from dcf.data.views import eval_views
from dcf.export.names import SIZE_STRIDE
from dcf.inference.backends import Backend, ModelInfo


@dataclass(frozen=True)
class Tolerance:
    """Largest error allowed, relative to the largest reference logit of the batch.

    Top-1 must agree on every clip whose two best reference logits are further apart than twice
    this error; closer calls are reported but cannot fail a run.
    """

    max_rel: float


TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(max_rel=1e-4),  # float32 end to end: only summation order differs
    "fp16": Tolerance(max_rel=2e-2),  # half-precision weights and activations (10-bit mantissa)
    "bf16": Tolerance(max_rel=5e-2),  # bfloat16 compute (7-bit mantissa; OpenVINO's bf16 option)
}


@dataclass(frozen=True)
class Comparison:
    runtime: str
    inputs: str
    precision: str
    max_abs: float
    max_rel: float
    top1_agree: int
    top1_total: int
    top1_decided_failures: int  # disagreements on clips with a clear reference top-1
    passed: bool


def compare(reference: np.ndarray, output: np.ndarray, tolerance: Tolerance) -> dict[str, float | int | bool]:
    """Error and top-1 statistics of ``output`` logits against ``reference`` logits."""
    if output.shape != reference.shape:
        raise ValueError(f"output shape {output.shape} differs from the reference {reference.shape}")
    error = np.abs(output.astype(np.float64) - reference.astype(np.float64))
    scale = max(float(np.abs(reference).max()), 1e-12)
    max_rel = float(error.max()) / scale
    ranked = np.sort(reference, axis=1)
    margin = (ranked[:, -1] - ranked[:, -2]) if reference.shape[1] > 1 else np.full(len(reference), np.inf)
    agree = reference.argmax(1) == output.argmax(1)
    decided = margin > 2 * tolerance.max_rel * scale
    decided_failures = int((decided & ~agree).sum())
    return {
        "max_abs": float(error.max()),
        "max_rel": max_rel,
        "top1_agree": int(agree.sum()),
        "top1_total": len(agree),
        "top1_decided_failures": decided_failures,
        "passed": bool(np.isfinite(error).all() and max_rel <= tolerance.max_rel and decided_failures == 0),
    }


def decoded_clip(spec: InputSpec, video: str | Path | None) -> tuple[str, np.ndarray]:
    """One centre-crop clip of ``video``, sampled and preprocessed by the model's input spec.

    Without a video, a synthetic one (``dcf data synth``'s renderer) is encoded to a temporary
    H.264 MP4 and decoded back, so the check always goes through real decoding.
    """
    if video is not None:
        clip = eval_views(open_video(Path(video)), spec)
        return f"decoded {Path(video).name}", clip.numpy()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "synthetic.mp4"
        frames = render_video(0, np.random.default_rng(1), num_frames=24, size=max(96, spec.test_short_side))
        write_mp4(path, frames)
        clip = eval_views(open_video(path), spec)
    return "decoded synthetic H.264 clip", clip.numpy()


def verification_inputs(
    spec: InputSpec,
    *,
    dynamic_frames: bool = False,
    dynamic_size: bool = False,
    video: str | Path | None = None,
    seed: int = 1,
) -> list[tuple[str, np.ndarray]]:
    """(description, float32 batch) pairs: the spec's clip shape, the dynamic axes varied, and a
    decoded video clip."""
    rng = np.random.default_rng(seed)
    t, s = spec.num_frames, spec.crop_size

    def random(n: int, frames: int, height: int, width: int) -> np.ndarray:
        return rng.standard_normal((n, 3, frames, height, width), dtype=np.float32)

    inputs = [(f"random 2x{t}x{s}x{s} (seed {seed})", random(2, t, s, s))]
    if dynamic_frames:
        inputs.append((f"random 1x{t + 4}x{s}x{s}", random(1, t + 4, s, s)))
    if dynamic_size:
        inputs.append(
            (
                f"random 1x{t}x{s + SIZE_STRIDE}x{s + 2 * SIZE_STRIDE}",
                random(1, t, s + SIZE_STRIDE, s + 2 * SIZE_STRIDE),
            )
        )
    inputs.append(decoded_clip(spec, video))
    return inputs


def check_same_model(reference: ModelInfo, candidate: ModelInfo, source: str) -> None:
    """Refuses to compare a file with a checkpoint it was not exported from."""
    if (candidate.architecture, candidate.classes) != (reference.architecture, reference.classes):
        raise ValueError(
            f"{source} holds {candidate.architecture} with {len(candidate.classes)} classes, but the checkpoint "
            f"is {reference.architecture} with {len(reference.classes)} classes: export it from this checkpoint first"
        )


def verify(
    reference: Backend, candidates: list[tuple[str, Backend]], inputs: list[tuple[str, np.ndarray]]
) -> list[Comparison]:
    """Compares each named candidate's logits with the ``reference``'s (the float32 PyTorch
    checkpoint) on every input, against the tolerance of the candidate's precision."""
    results = []
    for description, batch in inputs:
        expected = reference(batch)
        for name, candidate in candidates:
            precision = candidate.info.precision
            stats = compare(expected, np.asarray(candidate(batch)), TOLERANCES[precision])
            results.append(Comparison(runtime=name, inputs=description, precision=precision, **stats))  # type: ignore[arg-type]
    return results


def format_report(results: list[Comparison]) -> str:
    """A plain-text table, one row per (runtime, input)."""
    rows = [
        [
            r.runtime,
            r.inputs,
            r.precision,
            f"{r.max_abs:.2e}",
            f"{r.max_rel:.2e}",
            f"{r.top1_agree}/{r.top1_total}",
            f"{'PASS' if r.passed else 'FAIL'} (rel <= {TOLERANCES[r.precision].max_rel:.0e})",
        ]
        for r in results
    ]
    header = ["runtime", "input", "prec", "max abs", "max rel", "top-1", "result"]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def results_json(results: list[Comparison]) -> list[dict[str, object]]:
    return [asdict(r) for r in results]
