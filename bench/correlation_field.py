"""What the correlation field shows on clips with known motion (issue #17, DESIGN.md section 8).

A square of random colours moves right (or left, or not at all) by ``step`` pixels per frame over
a flat grey background, encoded as H.264 at the demo model's working size (8 frames, 74 px: every
frame is sampled and the centre crop keeps the motion in model pixels). For each DCF stage of the
demo model, and for the raw op on the input frames (unit-length colour features), the table gives
the best-matching displacement for tau = +1 over the positions on the square and over the
background: the share pointing right, left, or nowhere, and the mean horizontal displacement.
It reports what the trained stages do; nothing is tuned.

    python -m bench.correlation_field     # writes bench/results/correlation_field.md and a picture
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path

import numpy as np
import torch

from bench.common import machine_description, write_results
from dcf.checkpoint import DEMO, checkpoint_of, load_checkpoint
from dcf.data.video import VideoLimits
from dcf.inference.fields import VisualizeOptions, correlations, displacement_field, visualize
from dcf.inference.pipeline import PredictOptions, prepare
from dcf.models.dcf_net import DCFNet
from dcf.ops import correlation
from dcf.testing import media

SIZE, SQUARE, FRAMES = 74, 20, 8  # even sides for H.264; resized to 73 (x0.99)


def _clip(step: int) -> bytes:
    frames = media.moving_texture(FRAMES, SIZE, SIZE, step=abs(step), size=SQUARE, seed=3)
    if step < 0:
        frames = np.ascontiguousarray(frames[:, :, ::-1])
    return media.encoded(".mp4", frames)


def _square_mask(step: int, crop_offset: int, size: int) -> np.ndarray:
    """(T, size, size) bool: where the square is in the model's crop."""
    mask = np.zeros((FRAMES, SIZE, SIZE), bool)
    top = (SIZE - SQUARE) // 2
    for t in range(FRAMES):
        left = 4 + abs(step) * t
        mask[t, top : top + SQUARE, left : left + SQUARE] = True
    if step < 0:
        mask = mask[:, :, ::-1]
    return mask[:, crop_offset : crop_offset + size, crop_offset : crop_offset + size]


def _shares(dx: np.ndarray) -> str:
    if dx.size == 0:
        return "0 | - | - | - | -"
    right, left = (dx > 0).mean(), (dx < 0).mean()
    return f"{dx.size} | {right:.0%} | {left:.0%} | {1 - right - left:.0%} | {dx.mean():+.1f}"


def _rows(name: str, field_dx: np.ndarray, valid: np.ndarray, on_square: np.ndarray) -> list[str]:
    square = field_dx[valid & on_square]
    background = field_dx[valid & ~on_square]
    return [f"| {name} | {_shares(square)} | {_shares(background)} |"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/correlation_field.md"))
    args = parser.parse_args()
    model = load_checkpoint(DEMO).eval()
    assert isinstance(model, DCFNet)
    spec = checkpoint_of(model).input_spec
    crop = spec.crop_size
    offset = (SIZE - crop) // 2
    lines = [
        "# The correlation field on known motion",
        "",
        f"{datetime.date.today()}, {machine_description()}. `python -m bench.correlation_field`.",
        "",
        f"Demo model (`{checkpoint_of(model).architecture}`, {FRAMES} x {crop}^2), tau = +1, argmax. "
        "A textured square moves by the step (model pixels per frame); right / left / none: share of "
        "positions whose best match points that way, of n positions with information (the raw op has none "
        "on the flat background: its n there counts the square's blurred edge); mean dx in input pixels.",
        "",
    ]
    for step in (2, 4, -4, 6, 0):
        data = _clip(step)
        views = prepare(data, spec, PredictOptions(), VideoLimits(), max_views=1).views
        clip = torch.from_numpy(views)
        lines += [
            f"## step {step:+d} px per frame ({'right' if step > 0 else 'left' if step < 0 else 'still'})",
            "",
            "| field | square: n | right | left | none | mean dx | background: n | right | left | none | mean dx |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        mask = _square_mask(step, offset, crop)
        # The raw op on the frames the model saw: unit-length, mean-free colour per pixel (the grey
        # background, near zero after H.264, left out); K = 5 at stride 1 sees up to 2 px per frame.
        frames = (
            clip[0] * torch.tensor(spec.std)[:, None, None, None]
            + torch.tensor(spec.mean)[:, None, None, None]
        )
        features = frames - 128 / 255
        norm = features.norm(dim=0, keepdim=True)
        features = torch.where(norm > 0.15, features / norm.clamp_min(1e-6), torch.zeros_like(features))
        raw = displacement_field(correlation(features[None], 5, 2)[0], 5, 2, 1)
        lines += _rows("raw op on the frames (stride 1)", raw.displacement[..., 1], raw.valid, mask)
        with torch.inference_mode():
            _, volumes = model.forward_with_volumes(clip)
        for stage, corr in sorted(correlations(model).items()):
            volume = volumes[stage][0]
            stride = crop // volume.shape[-1]
            field = displacement_field(volume, corr.kernel_size, corr.temporal_range, 1, stride=stride)
            # A position is on the square if the square covers the centre of its stride x stride cell.
            centres = mask[:, stride // 2 :: stride, stride // 2 :: stride]
            lines += _rows(
                f"demo stage {stage} (stride {stride})", field.displacement[..., 1], field.valid, centres
            )
        lines.append("")
        if step == 4:
            picture = visualize(model, views[0], spec, VisualizeOptions(stage=2, tau=1))
            args.out.with_suffix(".png").write_bytes(picture.data)
    write_results(args.out, lines)


if __name__ == "__main__":
    main()
