"""The identity side of the pipeline for one re-id model, built at the start and again when the model is swapped.

Embeddings of different models do not compare, so the matcher, the threshold calibration and each camera's mean
embedding belong to one model. What the store kept for that model comes back: the working set of identities, with
the store's vector index behind it for everyone else, and the cameras' means. Appearance search asks with the same
model and means.
"""

from __future__ import annotations

import logging

from reid_desktop.core.config import MatcherConfig
from reid_desktop.core.identity.calibration import ThresholdCalibration
from reid_desktop.core.identity.camera_norm import CameraNormaliser
from reid_desktop.core.identity.matching import IdAllocator, IdentityDirectory, IdentityMatcher
from reid_desktop.core.identity.search import Searcher
from reid_desktop.core.store.interface import HistoryStore, StoreDirectory
from reid_desktop.core.topology import parse as parse_camera_links
from reid_desktop.core.vision.embedding import Embedder

log = logging.getLogger(__name__)


def new_matcher(config: MatcherConfig, store: HistoryStore | None, embedder: Embedder,
                allocate_id: IdAllocator) -> IdentityMatcher:
    """A matcher for the model; with a store, identities beyond its working set are looked up through the
    store's vector index of this model's embeddings."""
    directory: IdentityDirectory | None = None
    if store is not None:
        directory = StoreDirectory(store, embedder.key, embedder.dim, config.identity_gallery_size)
    return IdentityMatcher(config.threshold or embedder.match_threshold, config.identity_gallery_size, allocate_id,
                           config.active_identities, directory,
                           parse_camera_links(config.camera_links, config.same_moment_s), config.link_prior)


def new_calibration(config: MatcherConfig) -> ThresholdCalibration | None:
    """Calibrates the threshold for the model, unless the operator set one."""
    return None if config.threshold else ThresholdCalibration(config.false_accept)


def restored_normaliser(config: MatcherConfig, store: HistoryStore | None,
                        embedder: Embedder) -> CameraNormaliser | None:
    """Per-camera mean embeddings of the model, as the store kept them (None: normalisation is off)."""
    if not config.camera_normalisation:
        return None
    normaliser = CameraNormaliser()
    if store is not None:
        try:
            for camera, mean in store.camera_means(embedder.key).items():
                normaliser.restore(camera, mean)
        except Exception as exc:  # a damaged row must not stop the cameras: they start neutral
            log.warning("camera means could not be read (%s); the cameras start neutral", exc)
    return normaliser


def save_camera_means(store: HistoryStore | None, embedder: Embedder, normaliser: CameraNormaliser | None) -> None:
    if store is not None and normaliser is not None:
        try:
            store.save_camera_means(embedder.key, normaliser.means)
        except Exception as exc:
            log.warning("camera means not saved: %s", exc)


def restore_identities(config: MatcherConfig, store: HistoryStore, embedder: Embedder, matcher: IdentityMatcher,
                       also_targets: set[int] | None = None) -> None:
    """Bring back the working set: targets, named people and those seen last (with the model's embeddings);
    everyone else is found through the index when they come back."""
    for identity_id, is_target, named, gallery in store.identity_galleries(
            embedder.key, config.identity_gallery_size, config.active_identities):
        matcher.restore(identity_id, gallery, is_target or identity_id in (also_targets or set()), named)


def model_searcher(config: MatcherConfig, store: HistoryStore | None, embedder: Embedder,
                   normaliser: CameraNormaliser | None) -> Searcher:
    """Appearance search with the model, its cameras' means and the store's live index of its embeddings."""
    index = store.attach_index(embedder.key, embedder.dim) if store is not None else None
    normalise = normaliser.for_queries() if normaliser is not None else None
    return Searcher(embedder, index, normalise, config.search_reranking, config.identity_gallery_size)
