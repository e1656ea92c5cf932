"""reid-trainer: PyTorch training, evaluation and ONNX export of re-id models (no Qt).

The hand-off to the app is an ONNX file whose metadata (see ``reid_desktop.core.vision.model_info``)
carries input size, normalisation, embedding size and provenance.
"""
