"""Training: configuration and the loop."""
