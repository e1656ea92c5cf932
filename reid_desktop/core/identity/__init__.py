"""Identity: one person across cameras and time (galleries, normalisation, camera links, re-association)."""
