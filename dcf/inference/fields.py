"""The correlation field drawn as motion (paper section 4.4, DESIGN.md section 8).

For one clip, a DCF stage and a temporal offset ``tau``, each position's best-matching entry of the
K x K window (argmax, or soft-argmax) gives a displacement ``(ky - r, kx - r) * |tau| * stride``:
in input pixels, towards where the content is ``tau`` frames later (earlier for ``tau < 0``). It is
drawn with the optical-flow colour wheel of Baker et al. (Middlebury): hue is the direction,
saturation the magnitude (normalised per picture, stated in the legend), blended over the frames
the model saw in proportion to the magnitude. Window entries whose partner lies outside the frame
are no measurement and left out; among equal best matches the smallest displacement wins (a still
or flat region shows no motion); positions whose measured entries are all equal (the partner frame
lies outside the clip, or nothing there to match) are left undrawn.
"""

from __future__ import annotations

import io
import math
import threading
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from torch import Tensor

from dcf.data.spec import InputSpec
from dcf.data.video import VideoLimits
from dcf.inference.pipeline import InvalidOptions, PredictOptions, describe_errors, prepare
from dcf.models.dcf_net import DCFNet
from dcf.models.layers import Correlation, DCFBlock

MAX_COLUMNS = 8  # frames drawn side by side in the picture


def offsets(temporal_range: int) -> list[int]:
    """The offsets of a volume's channel groups, in order: ``-L..-1, +1..+L``."""
    return [*range(-temporal_range, 0), *range(1, temporal_range + 1)]


@dataclass(frozen=True)
class DisplacementField:
    """One clip's best-matching displacements for one stage and offset."""

    displacement: np.ndarray  # (T, H, W, 2) float32: (dy, dx) in input pixels over tau frames
    valid: np.ndarray  # (T, H, W) bool: the window carries information
    tau: int
    stride: int  # input pixels per position
    frame_step: int  # input frames per volume time step


def displacement_field(
    volume: Tensor,
    kernel_size: int,
    temporal_range: int,
    tau: int,
    stride: int = 1,
    *,
    soft: bool = False,
    frame_step: int = 1,
) -> DisplacementField:
    """The field of one clip's volume ``(K*K*2L, T, H, W)`` (as :func:`dcf.ops.correlation` makes it).

    Raises:
        ValueError: ``tau`` is not one of :func:`offsets`, or the volume's channels do not match.
    """
    k, r = kernel_size, kernel_size // 2
    if tau not in offsets(temporal_range):
        raise ValueError(f"tau must be one of {offsets(temporal_range)}, got {tau}")
    if volume.dim() != 4 or volume.shape[0] != k * k * 2 * temporal_range:
        raise ValueError(
            f"expected a volume of shape (K*K*2L={k * k * 2 * temporal_range}, T, H, W), got {tuple(volume.shape)}"
        )
    group = offsets(temporal_range).index(tau)
    window = volume[group * k * k : (group + 1) * k * k].float()  # (K*K, T, H, W), entry ky*K + kx
    _, _, height, width = window.shape
    cells = (torch.arange(k) - r) * abs(tau)  # displacement of each window row/column, in positions
    dy_of, dx_of = cells.repeat_interleave(k), cells.repeat(k)
    # Entries whose partner lies outside the frame hold a zero that is no measurement: left out.
    rows = torch.arange(height)[None, :, None] + dy_of[:, None, None]
    columns = torch.arange(width)[None, None, :] + dx_of[:, None, None]
    inside = ((rows >= 0) & (rows < height) & (columns >= 0) & (columns < width))[:, None]  # (K*K, 1, H, W)
    window = window.masked_fill(~inside, -math.inf)
    # Nearest first, so that among equal correlations (flat regions, still scenes) the smallest
    # displacement wins: argmax takes the first of equal maxima.
    order = torch.argsort((dy_of**2 + dx_of**2).float(), stable=True)
    window, dy_of, dx_of = window[order], dy_of[order], dx_of[order]
    steps_y, steps_x = dy_of.float() * stride, dx_of.float() * stride
    if soft:
        weights = torch.softmax(window, dim=0)
        dy = torch.einsum("k,kthw->thw", steps_y, weights)
        dx = torch.einsum("k,kthw->thw", steps_x, weights)
    else:
        best = window.argmax(dim=0)
        dy, dx = steps_y[best], steps_x[best]
    informative = window.masked_fill(window == -math.inf, math.inf).amin(dim=0)
    valid = window.amax(dim=0) > informative  # the measured entries differ
    displacement = torch.stack([dy, dx], dim=-1).numpy().astype(np.float32)
    return DisplacementField(displacement, valid.numpy(), tau, stride, frame_step)


def _wheel() -> np.ndarray:
    """The Middlebury colour wheel: 55 hues from red through yellow, green, cyan, blue, magenta."""
    ramps = [(15, (1, 0, 0), (1, 1, 0)), (6, (1, 1, 0), (0, 1, 0)), (4, (0, 1, 0), (0, 1, 1))]
    ramps += [(11, (0, 1, 1), (0, 0, 1)), (13, (0, 0, 1), (1, 0, 1)), (6, (1, 0, 1), (1, 0, 0))]
    colours = [
        np.array(start) + (np.array(end) - np.array(start)) * i / n
        for n, start, end in ramps
        for i in range(n)
    ]
    return np.array(colours, dtype=np.float64)


WHEEL = _wheel()


def flow_colours(displacement: np.ndarray, max_magnitude: float) -> tuple[np.ndarray, np.ndarray]:
    """RGB colours (..., 3) in 0..1 of displacements (..., 2) = (dy, dx), and their magnitude
    relative to ``max_magnitude`` (0..1). Right is red, down yellow-orange, left cyan, up blue-violet;
    no motion is white."""
    dy, dx = displacement[..., 0].astype(np.float64), displacement[..., 1].astype(np.float64)
    magnitude = np.hypot(dy, dx)
    relative = np.clip(magnitude / max_magnitude, 0, 1) if max_magnitude > 0 else np.zeros_like(magnitude)
    position = (np.arctan2(-dy, -dx) / math.pi + 1) / 2 * (len(WHEEL) - 1)  # 0 .. 54
    low = np.floor(position).astype(int)
    high = (low + 1) % len(WHEEL)
    fraction = (position - low)[..., None]
    hue = (1 - fraction) * WHEEL[low] + fraction * WHEEL[high]
    colours = 1 - relative[..., None] * (1 - hue)  # saturation grows with the magnitude
    return colours, relative


class VisualizeOptions(BaseModel):
    """What to draw (query parameters or form fields of ``POST /v1/visualize``, flags of
    ``dcf visualize``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stage: int | None = Field(None, description="DCF stage to draw (2, 3 or 4; default: the model's first)")
    tau: int = Field(
        1,
        description="temporal offset: +1 is the next frame, -1 the previous (0 is not one)",
        json_schema_extra={"not": {"const": 0}},
    )
    soft: bool = Field(False, description="soft-argmax over the window instead of argmax")
    format: Literal["png", "mp4"] = Field(
        "png", description="png: the frames and their fields side by side; mp4: the fields as a video"
    )

    @field_validator("tau")
    @classmethod
    def _not_zero(cls, tau: int) -> int:
        if tau == 0:
            raise ValueError("tau must not be 0 (a frame against itself is no motion)")
        return tau

    @classmethod
    def parse(cls, values: dict[str, Any]) -> VisualizeOptions:
        """Raises: InvalidOptions."""
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise InvalidOptions(describe_errors(exc.errors())) from None

    @staticmethod
    def bounds(model: DCFNet) -> dict[str, dict[str, Any]]:
        """The choices ``model`` gives, as JSON Schema keywords (the served API document carries
        them; :meth:`stage_of` applies them). Beyond them, ``|tau|`` must be at most the chosen
        stage's range."""
        ranges = stage_ranges(model)
        return {
            "stage": {"enum": sorted(ranges)},
            "tau": {"minimum": -max(ranges.values()), "maximum": max(ranges.values())},
        }

    def stage_of(self, model: DCFNet) -> int:
        """The stage to draw, checked against the model's DCF blocks.

        Raises:
            InvalidOptions: A stage without a DCF block, or ``tau`` beyond that block's range.
        """
        stages = stage_ranges(model)
        stage = self.stage if self.stage is not None else min(stages)
        if stage not in stages:
            raise InvalidOptions(
                f"stage must be one of {sorted(stages)} (the model's DCF stages), got {stage}"
            )
        if self.tau not in offsets(stages[stage]):
            raise InvalidOptions(
                f"tau must be one of {offsets(stages[stage])} at stage {stage}, got {self.tau}"
            )
        return stage


def correlations(model: DCFNet) -> dict[int, Correlation]:
    """The correlation of each DCF stage of ``model``, by stage number."""
    found = {}
    for name, block in model.blocks.items():
        assert isinstance(block, DCFBlock)
        found[int(name.removeprefix("stage"))] = block.correlation
    return found


def stage_ranges(model: DCFNet) -> dict[int, int]:
    """The temporal range L of each DCF stage of ``model``."""
    return {stage: c.temporal_range for stage, c in correlations(model).items()}


@dataclass(frozen=True)
class Visualization:
    data: bytes
    media_type: str
    stage: int
    max_magnitude: float  # input pixels over tau frames: full colour


def visualize(model: DCFNet, clip: np.ndarray, spec: InputSpec, options: VisualizeOptions) -> Visualization:
    """The picture of one preprocessed clip ``(3, T, S, S)`` (float32, normalised with ``spec``):
    :func:`stage_volume` then :func:`draw`.

    Raises:
        InvalidOptions: As :meth:`VisualizeOptions.stage_of`.
    """
    stage = options.stage_of(model)
    return draw(stage_volume(model, clip, stage), correlations(model)[stage], clip, spec, options, stage)


def stage_volume(model: DCFNet, clip: np.ndarray, stage: int) -> Tensor:
    """The correlation volume ``(K*K*2L, T', H', W')`` of ``stage`` for one clip (a forward pass:
    the server runs it on its model thread)."""
    with torch.inference_mode():
        parameter = next(model.parameters())
        _, volumes = model.forward_with_volumes(
            torch.from_numpy(clip)[None].to(parameter.device, parameter.dtype)
        )
    return volumes[stage][0].float().cpu()


def stage_stride(size: int, positions: int) -> int:
    """Input pixels per position of a stage whose maps have ``positions`` across ``size`` input
    pixels: a power of two (4, 8, 16), though stages round odd sizes up (312 px: 20 at stride 16)."""
    return int(2 ** round(math.log2(size / positions)))


def draw(
    volume: Tensor,
    correlation: Correlation,
    clip: np.ndarray,
    spec: InputSpec,
    options: VisualizeOptions,
    stage: int,
) -> Visualization:
    """The picture of ``volume``, the ``stage`` volume of ``clip`` made by ``correlation``."""
    frames_in, size = clip.shape[1], clip.shape[-1]
    field = displacement_field(
        volume,
        correlation.kernel_size,
        correlation.temporal_range,
        options.tau,
        stride=stage_stride(size, volume.shape[-1]),
        soft=options.soft,
        frame_step=max(1, frames_in // volume.shape[1]),
    )
    frames = _display_frames(clip, spec)
    magnitudes = np.hypot(field.displacement[..., 0], field.displacement[..., 1])[field.valid]
    max_magnitude = float(magnitudes.max()) if magnitudes.size else 0.0
    overlays = [
        _overlay(frames[t * field.frame_step], field, t, max_magnitude) for t in range(volume.shape[1])
    ]
    legend = _legend(
        stage,
        field,
        max_magnitude,
        options.soft,
        width=overlays[0].shape[1] * min(len(overlays), MAX_COLUMNS),
    )
    if options.format == "mp4":
        data, media_type = _mp4([_stack([o, legend]) for o in overlays]), "video/mp4"
    else:
        columns = np.linspace(0, len(overlays) - 1, min(len(overlays), MAX_COLUMNS)).round().astype(int)
        seen = [frames[t * field.frame_step] for t in columns]
        rows = [
            np.concatenate([_scale(f) for f in seen], axis=1),
            np.concatenate([overlays[t] for t in columns], axis=1),
        ]
        data, media_type = _png(_stack([*rows, legend])), "image/png"
    return Visualization(data, media_type, stage, max_magnitude)


def visualize_video(
    model: DCFNet,
    data: bytes | bytearray,
    spec: InputSpec,
    options: VisualizeOptions,
    limits: VideoLimits,
    *,
    threads: int = 0,
    cancel: threading.Event | None = None,
) -> Visualization:
    """:func:`visualize` of an encoded video's centre clip (centre crop), sampled and preprocessed
    as ``POST /v1/predict`` does for one view.

    Raises:
        InvalidOptions: As :meth:`VisualizeOptions.stage_of` (checked before decoding).
        VideoDecodeError, VideoLimitError, DecodeCancelled: As :func:`dcf.inference.pipeline.prepare`.
    """
    options.stage_of(model)
    prepared = prepare(data, spec, PredictOptions(), limits, max_views=1, threads=threads, cancel=cancel)
    return visualize(model, prepared.views[0], spec, options)


def _display_frames(clip: np.ndarray, spec: InputSpec) -> np.ndarray:
    """The clip as the model saw it, as uint8 RGB frames (T, S, S, 3)."""
    mean = np.array(spec.mean, np.float32)[:, None, None, None]
    std = np.array(spec.std, np.float32)[:, None, None, None]
    rgb = np.clip((clip * std + mean) * 255, 0, 255).round().astype(np.uint8)
    return np.ascontiguousarray(rgb.transpose(1, 2, 3, 0))


def _scale(image: np.ndarray, target: int = 128) -> np.ndarray:
    """Nearest-neighbour enlargement of a small frame, so its pixels stay visible."""
    factor = max(1, target // image.shape[0])
    return image.repeat(factor, axis=0).repeat(factor, axis=1)


def _overlay(
    frame: np.ndarray, field: DisplacementField, t: int, max_magnitude: float, strength: float = 0.85
) -> np.ndarray:
    colours, relative = flow_colours(field.displacement[t], max_magnitude)
    alpha = strength * relative * field.valid[t]
    size = frame.shape[0]
    repeat = math.ceil(size / colours.shape[0])
    colours = colours.repeat(repeat, axis=0).repeat(repeat, axis=1)[:size, :size]
    alpha = alpha.repeat(repeat, axis=0).repeat(repeat, axis=1)[:size, :size, None]
    blended = frame.astype(np.float64) * (1 - alpha) + colours * 255 * alpha
    return _scale(blended.round().astype(np.uint8))


def _legend(stage: int, field: DisplacementField, max_magnitude: float, soft: bool, width: int) -> np.ndarray:
    from PIL import Image, ImageDraw

    height = 72
    image = Image.new("RGB", (max(width, 360), height), (255, 255, 255))
    image.paste(Image.fromarray(wheel_image(64)), (4, 4))
    frames = abs(field.tau) * field.frame_step
    lines = [
        f"stage {stage} (stride {field.stride}), tau {field.tau:+d}: {'soft-argmax' if soft else 'argmax'}",
        f"full colour = {max_magnitude:.1f} px over {frames} frame{'s' if frames > 1 else ''}",
        "hue: direction of the best match; undrawn: no information",
    ]
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((76, 8 + 20 * i), line, fill=(0, 0, 0))
    return np.asarray(image)


def wheel_image(size: int) -> np.ndarray:
    """The colour wheel as a disc on white (size x size RGB): the legend of the picture."""
    centre = (size - 1) / 2
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    displacement = np.stack([y - centre, x - centre], axis=-1)
    colours, _ = flow_colours(displacement, centre)
    inside = np.hypot(y - centre, x - centre) <= centre
    return np.where(inside[..., None], colours * 255, 255).round().astype(np.uint8)


def _fit(image: np.ndarray, width: int) -> np.ndarray:
    """``image`` cut or padded (white) to ``width``."""
    if image.shape[1] >= width:
        return image[:, :width]
    pad = np.full((image.shape[0], width - image.shape[1], 3), 255, np.uint8)
    return np.concatenate([image, pad], axis=1)


def _stack(rows: list[np.ndarray]) -> np.ndarray:
    width = max(r.shape[1] for r in rows)
    return np.concatenate([_fit(r, width) for r in rows], axis=0)


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


def _mp4(frames: list[np.ndarray], fps: int = 4) -> bytes:
    import av

    height, width = (d - d % 2 for d in frames[0].shape[:2])  # yuv420p wants even sizes
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for frame in frames:
            for packet in stream.encode(
                av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:height, :width]), format="rgb24")
            ):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()
