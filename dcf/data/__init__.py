"""Data: formats, decoding, sampling, preprocessing and the synthetic motion dataset."""
