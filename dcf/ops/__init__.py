"""Operators: the DCF correlation op and its reference."""

from dcf.ops.correlation import correlation, correlation_macs
from dcf.ops.reference import correlation_reference

__all__ = ["correlation", "correlation_macs", "correlation_reference"]
