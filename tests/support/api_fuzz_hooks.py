"""Schemathesis hooks for the API fuzz test (``tests/server/test_api_document.py``), loaded by the
``st`` process through ``SCHEMATHESIS_HOOKS``.

Two things an OpenAPI document cannot say, supplied here and nowhere else:
- what a valid video is: the document says the ``file`` part is ``video/*``; here the video media
  types get real encoded videos (Schemathesis' own binary strings would be rightly refused, 415),
  so that schema-valid cases are answered 200 and the answers checked against the response schema;
- two bounds across parameters (each parameter is bounded in the document, not the pair): clips x
  crops <= max views (``PredictOptions.check``) and |tau| <= the chosen stage's range
  (``VisualizeOptions.stage_of``, the demo model's ranges): where both values are valid and the
  pair is not, one is lowered as the case is generated (``map_case``), so the case stays as
  positive or negative as it was.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import strategies as st

from dcf.checkpoint import DEMO, load_checkpoint
from dcf.inference.fields import stage_ranges
from dcf.testing import media

schemathesis.openapi.media_type(
    "video/mp4",
    st.sampled_from(
        [
            media.encoded(".mp4", media.moving_square(20, 64, 80)),
            media.variable_frame_rate_mp4(),
            media.rotated_mp4(),
            media.portrait_mp4(),
            media.single_frame_mp4(),
        ]
    ),
)
schemathesis.openapi.media_type(
    "video/webm", st.just(media.encoded(".webm", media.moving_square(16, 48, 64)))
)


_RANGES = stage_ranges(load_checkpoint(DEMO))  # the fuzzed server serves the demo model


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    if case.operation.path == "/v1/predict":
        _bound_views(case)
    elif case.operation.path == "/v1/visualize":
        _bound_tau(case)
    return case


def _sources(case: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    form = case.body if isinstance(case.body, dict) else {}
    query = case.query if isinstance(case.query, dict) else {}
    return form, query


def _bound_tau(case: Any) -> None:
    form, query = _sources(case)
    source = query if "tau" in query else form
    tau = source.get("tau", 1)
    stage = query.get("stage", form.get("stage", min(_RANGES)))
    if type(tau) is int and tau != 0 and type(stage) is int and stage in _RANGES:
        limit = _RANGES[stage]
        if abs(tau) > limit and abs(tau) <= max(_RANGES.values()) and "tau" in source:
            source["tau"] = limit if tau > 0 else -limit


def _bound_views(case: Any) -> None:
    """Options come from the form and the query (the query wins): lowers clips where the value in
    effect came from, and only where it is valid (an invalid one is what a negative case tests)."""
    form, query = _sources(case)
    source = query if "clips" in query else form
    clips = source.get("clips", 1)
    crops = query.get("crops", form.get("crops", 1))
    schemas = {p["name"]: p["schema"] for p in case.operation.definition.raw["parameters"]}
    max_views = schemas["clips"]["maximum"]
    assert schemas["crops"]["enum"] == [1, 3]
    valid = type(clips) is int and 1 <= clips <= max_views and type(crops) is int and crops in (1, 3)
    if valid and clips * crops > max_views and "clips" in source:
        source["clips"] = max_views // crops
