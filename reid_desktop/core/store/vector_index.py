"""Nearest-neighbour search over L2-normalised embeddings (FAISS), with ids chosen by the owner.

Small collections are searched exactly (``IDMap2,Flat``: no training, fast below
:data:`EXACT_LIMIT` vectors). When a collection outgrows that, its vectors move to an inverted-file
index with 8-bit scalar quantisation (``IVF{nlist},SQ8``: a quarter of float32's memory) whose
list count follows the size (about 39 vectors per list, as FAISS wants for training, up to
:data:`NLIST`); it moves again to more lists each time it has grown fourfold, and once more when it
reaches the cap. A query scans ``nprobe`` of the lists. A move is trained in a background thread on
a snapshot while the old index keeps serving, and the additions and removals made meanwhile are
replayed before it takes over, so the owner never waits for a training.
FAISS was chosen over hnswlib and usearch because graph indexes take far longer to build at 2048
dimensions on two cores and delete only by marking (figures in bench/RESULTS.md).

An index is saved as two files: ``<name>`` (FAISS's own format) and ``<name>.json``, a manifest
with the owner's *stamp* (what the index held when saved) and the index file's size. :func:`load`
gives None for a missing, truncated or unreadable index, so the owner rebuilds it from its data.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from reid_desktop.core.paths import open_private

log = logging.getLogger(__name__)
faiss_any: Any = faiss  # parts of FAISS its type stubs do not describe

EXACT_LIMIT = 2_000  # an exact scan of 2,000 2048-d vectors takes well under a millisecond
NLIST = 1024  # most inverted lists; FAISS wants about 39 training vectors per list
NPROBE = 32
GROWTH = 4  # move to more lists when the size calls for this many times the lists held
FORMAT = 2  # 2: the manifest holds the index file's sha256


def _as_matrix(vectors: np.ndarray, dim: int) -> np.ndarray:
    matrix = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
    if matrix.shape[1] != dim:
        raise ValueError(f"vectors have {matrix.shape[1]} dimensions; this index holds {dim}")
    return matrix


def _as_ids(ids: Iterable[int] | np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.fromiter((int(i) for i in ids), dtype=np.int64))


class VectorIndex:
    """Inner-product (cosine) search over ``dim``-d unit vectors; thread-safe (one lock)."""

    def __init__(self, dim: int, exact_limit: int = EXACT_LIMIT, nlist: int = NLIST, nprobe: int = NPROBE,
                 index: Any = None) -> None:
        self.dim = dim
        self.exact_limit = exact_limit
        self.nlist = nlist
        self.nprobe = nprobe
        self._index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._lock = threading.Lock()
        self._journal: list[tuple[str, np.ndarray, np.ndarray | None]] | None = None  # while an IVF is built
        self._builder: threading.Thread | None = None
        self._move_failed = False
        if not self.is_exact:
            faiss.extract_index_ivf(self._index).nprobe = nprobe

    @property
    def is_exact(self) -> bool:
        return isinstance(self._index, faiss.IndexIDMap2)

    @property
    def lists(self) -> int:
        """Inverted lists (0: exact search)."""
        return 0 if self.is_exact else int(faiss.extract_index_ivf(self._index).nlist)

    def _move_due(self) -> bool:
        if self._journal is not None or self._move_failed:
            return False
        if self.is_exact:
            return len(self) > self.exact_limit
        wanted = lists_for(len(self), self.nlist)  # the cap counts as grown enough: it is the last move
        return wanted > self.lists and wanted >= min(GROWTH * self.lists, self.nlist)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, ids: Iterable[int] | np.ndarray, vectors: np.ndarray) -> None:
        ids_array, matrix = _as_ids(ids), _as_matrix(vectors, self.dim)
        if len(ids_array) != len(matrix):
            raise ValueError(f"{len(ids_array)} ids for {len(matrix)} vectors")
        if not len(ids_array):
            return
        with self._lock:
            self._index.add_with_ids(matrix, ids_array)
            if self._journal is not None:
                self._journal.append(("add", ids_array, matrix))
            start_move = self._move_due()
        if start_move:
            self._start_move()

    def remove(self, ids: Iterable[int] | np.ndarray) -> int:
        """Remove these ids (unknown ones are ignored); returns how many vectors went."""
        ids_array = _as_ids(ids)
        if not len(ids_array):
            return 0
        with self._lock:
            removed = int(self._index.remove_ids(faiss.IDSelectorArray(ids_array)))
            if self._journal is not None:
                self._journal.append(("remove", ids_array, None))
        return removed

    def search(self, queries: np.ndarray, k: int, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest vectors of each query: (scores, ids), best first; id -1 where there are fewer.

        ``nprobe``: lists to scan instead of the default (fewer: faster, may miss more).
        """
        matrix = _as_matrix(queries, self.dim)
        with self._lock:
            if len(self) == 0 or k <= 0:
                return np.zeros((len(matrix), 0), np.float32), np.zeros((len(matrix), 0), np.int64)
            # nprobe is set for this call under the lock: FAISS's torch helpers (imported by
            # pytorch-metric-learning) replace search() with one that takes no search parameters
            ivf: Any = None if self.is_exact or nprobe is None else faiss.extract_index_ivf(self._index)
            if ivf is not None:
                ivf.nprobe = nprobe
            try:
                scores, ids = self._index.search(matrix, int(min(k, len(self))))
            finally:
                if ivf is not None:
                    ivf.nprobe = self.nprobe
        return scores, ids

    # -- growing ---------------------------------------------------------------------------------

    def _start_move(self) -> None:
        with self._lock:
            if self.is_exact:
                ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
                vectors = faiss.downcast_index(self._index.index).reconstruct_n(0, len(ids))
            else:  # the codes decoded: 8-bit precision, plenty to train on and to re-encode
                ivf: Any = faiss.extract_index_ivf(self._index)
                lists = ivf.invlists
                ids = np.concatenate([faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
                                      for i in range(ivf.nlist)]).astype(np.int64)
                vectors = self._index.reconstruct_batch(ids)
            vectors = np.ascontiguousarray(np.asarray(vectors), dtype=np.float32)  # torch helpers hand back tensors
            self._journal = []
        self._builder = threading.Thread(target=self._move, args=(ids, vectors), name="vector-index-train",
                                         daemon=True)
        self._builder.start()

    def _move(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Train the inverted-file index on a snapshot, fill it, replay what changed meanwhile, swap."""
        try:
            ivf = trained_ivf(self.dim, vectors, lists_for(len(vectors), self.nlist))
            ivf.add_with_ids(vectors, ids)
            with self._lock:
                assert self._journal is not None
                for op, op_ids, op_vectors in self._journal:
                    if op == "add":
                        ivf.add_with_ids(op_vectors, op_ids)
                    else:
                        ivf.remove_ids(faiss.IDSelectorArray(op_ids))
                faiss.extract_index_ivf(ivf).nprobe = self.nprobe
                self._index, self._journal = ivf, None
            log.info("vector index: %d vectors moved to an inverted-file index (%d lists)", len(ids),
                     faiss.extract_index_ivf(ivf).nlist)
        except Exception:
            log.exception("vector index: building a larger inverted-file index failed; the current one stays")
            with self._lock:
                self._journal, self._move_failed = None, True  # do not retry on every add

    def wait_until_settled(self, timeout: float | None = None) -> bool:
        """Wait for a move to the inverted-file index in progress (tests, benchmarks, saving)."""
        builder = self._builder
        if builder is not None:
            builder.join(timeout)
            return not builder.is_alive()
        return True

    # -- files -----------------------------------------------------------------------------------

    def save(self, path: Path, stamp: dict[str, Any]) -> None:
        """Write the index and its manifest atomically (temporary files, then rename); private files."""
        self.wait_until_settled()
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with self._lock:
            faiss.write_index(self._index, str(tmp))
        os.chmod(tmp, 0o600)
        manifest = {"format": FORMAT, "dim": self.dim, "count": len(self), "bytes": tmp.stat().st_size,
                    "sha256": _sha256(tmp.read_bytes()), "stamp": stamp}
        os.replace(tmp, path)
        manifest_tmp = path.with_name(path.name + ".json.tmp")
        with open_private(manifest_tmp) as fh:
            json.dump(manifest, fh)
        os.replace(manifest_tmp, manifest_path(path))


def search_with_one_core() -> None:
    """From now on, FAISS uses one core for this thread's searches (its thread count is per thread, as in
    OpenMP). For searches beside the engine: FAISS's spinning helper threads would compete with the engine's
    own work (a 1,000-vector look-up took 10 ms instead of 1 on two cores)."""
    faiss.omp_set_num_threads(1)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def lists_for(count: int, most: int = NLIST) -> int:
    """Inverted lists for ``count`` vectors: about 39 training vectors each, at most ``most``."""
    return max(1, min(most, count // 39))


def trained_ivf(dim: int, vectors: np.ndarray, lists: int) -> Any:
    """An empty ``IVF{lists},SQ8`` inner-product index trained on (a sample of) ``vectors``; it can give
    vectors back by id (a hash-table direct map), so it can move to more lists later."""
    index: Any = faiss.index_factory(dim, f"IVF{lists},SQ8", faiss.METRIC_INNER_PRODUCT)
    index.set_direct_map_type(faiss_any.DirectMap.Hashtable)
    sample = vectors
    if len(vectors) > 64 * lists:
        sample = vectors[np.random.default_rng(0).choice(len(vectors), 64 * lists, replace=False)]
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    return index


def load(path: Path, dim: int, **options: Any) -> tuple[VectorIndex, dict[str, Any]] | None:
    """A saved index and its stamp; None (logged) when missing, of another dimension, truncated or unreadable."""
    path = Path(path)
    try:
        manifest = json.loads(manifest_path(path).read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT or manifest.get("dim") != dim:
            log.warning("vector index %s is of another format or dimension; rebuilding it", path.name)
            return None
        if path.stat().st_size != manifest["bytes"]:
            log.warning("vector index %s is truncated; rebuilding it", path.name)
            return None
        data = path.read_bytes()  # FAISS trusts the sizes in the file: only bytes this app wrote are parsed
        if _sha256(data) != manifest.get("sha256"):
            log.warning("vector index %s is not the file that was saved (damaged or altered); rebuilding it",
                        path.name)
            return None
        index = faiss.deserialize_index(np.frombuffer(data, np.uint8))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, MemoryError) as exc:
        log.warning("vector index %s is unreadable (%s); rebuilding it", path.name, exc)
        return None
    if index.d != dim or index.ntotal != manifest["count"] or not isinstance(manifest.get("stamp"), dict):
        log.warning("vector index %s does not match its manifest; rebuilding it", path.name)
        return None
    return VectorIndex(dim, index=index, **options), manifest["stamp"]
