"""Vision: the detector and its runtimes, trackers, person crops and re-id models (the room PyTorch lives in)."""
