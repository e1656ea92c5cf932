"""Runs inside the frozen app before ``reid_desktop`` is imported.

Ultralytics must never try to pip-install a missing package or reach a model hub from an installed
app: the bundle carries everything it needs (an operator may still override these variables).
CUDA libraries need nothing here: torch finds them through its RPATH, and the embedder asks ONNX
Runtime to preload them from the bundle's ``nvidia`` folder before it builds a GPU session.
"""

import os

os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("YOLO_OFFLINE", "1")
