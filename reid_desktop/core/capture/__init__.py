"""Capture: every camera, file and stream decoded on its own reader thread."""
