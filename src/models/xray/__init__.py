"""Chest X-ray-like scans (xray): the image use case's shape, image decoding, and the classifier that serves it."""
