"""Model downloads against a real HTTP server on 127.0.0.1: complete, cut, resumed, wrong bytes."""

from __future__ import annotations

import hashlib
import os

import pytest

from reid_desktop.core.vision.downloads import DownloadError, download, part_path
from tests.tools.file_server import serve

PAYLOAD = os.urandom(300_000)
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


def test_a_download_lands_verified_with_progress(tmp_path):
    seen = []
    target = tmp_path / "models" / "m.pth"
    with serve(PAYLOAD) as server:
        digest = download(server.url, target, sha256=DIGEST, progress=lambda done, total: seen.append((done, total)))
    assert digest == DIGEST and target.read_bytes() == PAYLOAD
    assert not part_path(target).exists()
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD)) and seen == sorted(seen)


def test_a_cut_download_installs_nothing_and_the_next_run_resumes(tmp_path):
    target = tmp_path / "m.pth"
    target.write_bytes(b"the model in use")
    with serve(PAYLOAD, mode="cut", cut_at=100_000) as server:
        with pytest.raises(DownloadError, match="run the same command again to resume"):
            download(server.url, target, sha256=DIGEST)
        assert target.read_bytes() == b"the model in use"  # the previous model is untouched
        assert part_path(target).stat().st_size == 100_000
        download(server.url, target, sha256=DIGEST)
    assert server.requests == [None, "bytes=100000-"]  # the second request asked only for the rest
    assert target.read_bytes() == PAYLOAD and not part_path(target).exists()


def test_wrong_bytes_are_refused_and_deleted(tmp_path):
    target = tmp_path / "m.pth"
    with serve(PAYLOAD, mode="wrong") as server, pytest.raises(DownloadError, match="not the expected file"):
        download(server.url, target, sha256=DIGEST)
    assert not target.exists() and not part_path(target).exists()


def test_a_server_that_ignores_the_range_starts_the_file_over(tmp_path):
    target = tmp_path / "m.pth"
    part_path(target).write_bytes(PAYLOAD[:5000])
    with serve(PAYLOAD, mode="no-range") as server:
        download(server.url, target, sha256=DIGEST)
    assert target.read_bytes() == PAYLOAD


def test_a_part_that_is_already_whole_is_just_verified(tmp_path):
    target = tmp_path / "m.pth"
    part_path(target).write_bytes(PAYLOAD)
    with serve(PAYLOAD) as server:
        assert download(server.url, target, sha256=DIGEST) == DIGEST
    assert target.read_bytes() == PAYLOAD


def test_missing_files_and_dead_servers_are_one_clear_line(tmp_path):
    with serve(PAYLOAD) as server:
        url = server.url
    with pytest.raises(DownloadError, match="cannot reach the server") as caught:
        download(url, tmp_path / "m.pth", sha256=DIGEST, timeout=2)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "m.pth").exists()


def test_a_full_disk_is_one_line_and_gives_the_space_back(tmp_path):
    """A real write limit (RLIMIT_FSIZE, in a child process) stands in for a full disk: EFBIG like ENOSPC."""
    import subprocess
    import sys
    import textwrap

    target = tmp_path / "m.pth"
    with serve(PAYLOAD) as server:
        child = textwrap.dedent(f"""
            import resource, signal, sys
            from pathlib import Path
            from reid_desktop.core.vision.downloads import DownloadError, download
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get the error, not the signal
            resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
            try:
                download({server.url!r}, Path({str(target)!r}), sha256={DIGEST!r})
            except DownloadError as exc:
                print(exc)
                sys.exit(3)
        """)
        done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert done.stdout.strip() == f"not enough disk space for m.pth in {tmp_path}"
    assert not target.exists() and not part_path(target).exists()
