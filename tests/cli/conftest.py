"""Real encoded clips of the synthetic classes, for the commands that label videos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dcf.data.synthetic import CLASS_NAMES, render_video
from dcf.testing import media


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("clips")
    paths = {}
    for label in ("moving left", "approaching"):
        frames = render_video(CLASS_NAMES.index(label), np.random.default_rng(11), num_frames=24, size=96)
        paths[label] = tmp / f"{label.replace(' ', '_')}.webm"
        paths[label].write_bytes(media.encoded(".webm", frames))
    return paths
