"""Engine: the run loop and the pipeline carrying frames through the rooms below, and the node built on them."""
