"""Helpers for testing a DCF deployment, used by this project's tests and benchmarks alike (as
``numpy.testing`` or ``torch.testing`` are): real encoded media, ordinary and hostile
(:mod:`dcf.testing.media`), and a real ``dcf serve`` process with HTTP calls to it
(:mod:`dcf.testing.server`, which needs httpx from the ``test`` extra)."""
