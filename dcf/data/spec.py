"""The input contract of a model: how clips are sampled and preprocessed.

One :class:`InputSpec` travels with every checkpoint and exported model, and the same sampling and
preprocessing functions read it in training, evaluation, export and the server.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from dcf._json import lists_to_tuples

Sampling = Literal["segment", "interval"]

# Kinetics-trained X3D and torchvision video models normalise with these (RGB, 0..1 scale).
KINETICS_MEAN = (0.45, 0.45, 0.45)
KINETICS_STD = (0.225, 0.225, 0.225)
# The paper's frame stride for interval sampling, by frame count (App. D).
PAPER_INTERVALS = {8: 8, 13: 6, 16: 5}
# torchvision's ImageNet classifiers normalise with these.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class InputSpec:
    """How a video becomes the model's input tensor (C, T, H, W)."""

    num_frames: int  # frames per clip (T)
    crop_size: int  # square crop side, pixels
    mean: tuple[float, float, float] = KINETICS_MEAN  # per RGB channel, on a 0..1 scale
    std: tuple[float, float, float] = KINETICS_STD
    # "segment": TSN, one frame from each of num_frames equal segments (Something-Something);
    # "interval": num_frames frames every `interval` frames (Kinetics).
    sampling: Sampling = "segment"
    interval: int = 8  # frame stride for interval sampling (paper: 8 for 8 frames, 6 for 13, 5 for 16)
    train_short_side: tuple[int, int] = (256, 320)  # training resize range of the short side, pixels
    test_short_side: int = 256  # evaluation resize of the short side before cropping, pixels

    def __post_init__(self) -> None:
        if self.num_frames < 1 or self.crop_size < 1:
            raise ValueError(f"InputSpec: num_frames and crop_size must be >= 1, got {self}")
        if self.sampling not in ("segment", "interval"):
            raise ValueError(f"InputSpec: sampling must be 'segment' or 'interval', got {self.sampling!r}")
        low, high = self.train_short_side
        if not self.crop_size <= low <= high or self.test_short_side < self.crop_size:
            raise ValueError(
                f"InputSpec: resize sizes must be at least the crop ({self.crop_size}), got "
                f"train_short_side={self.train_short_side}, test_short_side={self.test_short_side}"
            )

    @classmethod
    def for_crop(cls, num_frames: int, crop_size: int, **overrides: Any) -> InputSpec:
        """The paper's recipe scaled to ``crop_size``: 224 -> short side [256, 320] / 256."""
        scale = crop_size / 224
        defaults = {
            "train_short_side": (round(256 * scale), round(320 * scale)),
            "test_short_side": round(256 * scale),
            "interval": PAPER_INTERVALS.get(num_frames, 8),
        }
        return cls(num_frames=num_frames, crop_size=crop_size, **{**defaults, **overrides})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputSpec:
        """Inverse of :meth:`to_dict` (lists from JSON become tuples; unknown keys are an error)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"InputSpec: unknown fields {sorted(unknown)}; expected some of {sorted(names)}")
        return cls(**lists_to_tuples(data))
