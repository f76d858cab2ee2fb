"""The DCF inference service: upload a video, get action labels (DESIGN.md section 6)."""
