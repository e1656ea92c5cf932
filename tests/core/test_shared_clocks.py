"""Times and places compared across machines on a shared database (issue 28, item 8): another node's sighting
times reach this node on this node's clock whatever the other's clock says, and a camera of another node that
only shares a name with one of ours is another place."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from reid_desktop.core.capture.sources import SourceSpec
from reid_desktop.core.config import PipelineConfig
from reid_desktop.core.engine.pipeline import Pipeline
from reid_desktop.core.store import pg_store
from reid_desktop.core.store.change_feed import ChangeListener
from reid_desktop.core.store.database_url import parse_postgres_url
from reid_desktop.core.store.pg_store import PgSightingStore
from reid_desktop.core.store.shared_changes import SharedEmbeddings
from reid_desktop.core.store.storage import SightingStore
from reid_desktop.core.vision.embedding import ColorTextureEmbedder
from tests.core.test_shared_history import begin, sight, wait_for
from tests.pg_server import PASSWORD

AHEAD_S = 6.0


def test_another_nodes_sighting_times_arrive_on_this_nodes_clock(pg_url: str, monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    location = parse_postgres_url(pg_url)
    here, other = PgSightingStore(location, commit_interval_s=60), PgSightingStore(location, commit_interval_s=60)
    heard: list = []
    listener = ChangeListener(location, heard.append, lambda: "m", lambda: here.backend_pid, list)
    try:
        other.attach_index("m", 8)
        with monkeypatch.context() as clock:  # the other machine's clock is 6 s ahead of the server's and ours
            real = time.time
            clock.setattr(pg_store.time, "time", lambda: real() + AHEAD_S)
            run = begin(other)
        listener.start()
        assert listener.listening.wait(10)
        now = time.time()
        identity = other.allocate_identity_id()
        assert identity is not None
        for frame in range(3):  # stamped by its own clock: 2_000_000 + frame there is 6 s less here
            sight(other, run, "right", 1, frame, identity)
        assert other.flush()
        shared = wait_for(heard, lambda c: isinstance(c, SharedEmbeddings))
        assert shared
        assert np.allclose(shared[0].timestamps, [2_000_000.0 - AHEAD_S + f for f in range(3)], atol=0.25)
        assert abs(listener.clock_offset) < 0.25 and time.time() - now < 30
    finally:
        listener.stop()
        here.close()
        other.close()


def shared_at(camera: str, uri: str, identity: int, at: float) -> SharedEmbeddings:
    vector = np.zeros((1, ColorTextureEmbedder().dim), np.float32)
    vector[0, 0] = 1.0
    return SharedEmbeddings((7,), ColorTextureEmbedder().key, np.array([1], np.int64), np.array([identity], np.int64),
                            np.array([0.9], np.float32), vector, (camera,), np.array([at]), {identity: at - 10},
                            uris=(uri,))


def test_a_camera_of_another_node_sharing_only_a_name_with_ours_is_another_place(tmp_path: Path,
                                                                                 pose_detector) -> None:
    with SightingStore(tmp_path / "s.sqlite") as store:
        pipeline = Pipeline(PipelineConfig(), store, detector=pose_detector, embedder=ColorTextureEmbedder())
        pipeline.register_source(SourceSpec("rtsp://10.0.0.1/gate", "gate"))
        now = time.time()
        commands = pipeline.commands
        commands.apply_change(shared_at("gate", "rtsp://10.0.0.2/gate", 41, now))  # another building's "gate"
        commands.apply_change(shared_at("gate", "rtsp://10.0.0.1/gate", 42, now))  # our gate, seen by a station
        assert set(pipeline.matcher._members[41].seen_at) == {"gate@rtsp://10.0.0.2/gate"}
        assert set(pipeline.matcher._members[42].seen_at) == {"gate"}
        # someone in our gate at that moment cannot be the person in the other gate; can be the one in ours
        assert list(pipeline.matcher._impossible([41, 42], "gate", now + 0.1)) == [True, False]
        pipeline.close()
