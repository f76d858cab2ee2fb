"""The HTTP routes, one module per concern: probes and metrics, the model, predictions."""
