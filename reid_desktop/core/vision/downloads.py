"""Fetching model files: resumable, verified by sha256, never half-installed.

A download is written to ``TARGET.part``. An interrupted one (lost connection, closed app) resumes
from there with an HTTP ``Range`` request; a server that ignores the range sends the whole file again
and the part is started over. Only bytes whose sha256 matches are moved into place, by one rename,
so whatever reads ``TARGET`` sees either nothing or the whole verified file, and the model in use
stays in use until then. Wrong bytes are deleted (resuming them would only repeat the mismatch).
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from reid_desktop.core.errors import ModelError

CHUNK = 1 << 16
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
# (bytes so far, total bytes or None when the server does not say)
ProgressCallback = Callable[[int, int | None], None]


class DownloadError(ModelError):
    """A download that did not produce the verified file; the message is one line for the operator."""


def part_path(target: Path) -> Path:
    return target.with_name(target.name + ".part")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, target: Path, *, sha256: str | None, size: int | None = None,
             progress: ProgressCallback | None = None, timeout: float = 30.0) -> str:
    """Fetch ``url`` into ``target`` and return the file's sha256.

    ``sha256`` pins the content; ``None`` accepts any content (the caller must verify it otherwise and
    pin the returned digest). ``size`` is the expected length where known. Raises :class:`DownloadError`.
    """
    if sha256 is not None and not SHA256_PATTERN.fullmatch(sha256):
        raise ValueError(f"not a sha256 digest: {sha256!r}")
    target.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(target)
    try:
        _fetch(url, part, size, progress, timeout)
    except (OSError, http.client.HTTPException) as exc:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            part.unlink(missing_ok=True)  # give the space back; a resume could not finish either
            raise DownloadError(f"not enough disk space for {target.name} in {target.parent}") from None
        raise DownloadError(f"download of {target.name} failed: {_reason(exc)}; run the same command again to "
                            f"resume") from None
    digest = sha256_of(part)
    if sha256 is not None and digest != sha256:
        part.unlink()
        raise DownloadError(f"{target.name} is not the expected file (sha256 {digest[:12]}..., expected "
                            f"{sha256[:12]}...): deleted, nothing installed")
    part.replace(target)
    return digest


def _fetch(url: str, part: Path, size: int | None, progress: ProgressCallback | None, timeout: float) -> None:
    """Append the rest of ``url`` to ``part`` (OSError on network or disk trouble)."""
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:  # a part longer than the file: not ours to resume
        part.unlink()
        have = 0
    request = urllib.request.Request(url, headers={"User-Agent": "reid-desktop", "Accept-Encoding": "identity"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the part already holds every byte
            return
        raise
    with response:
        if have and response.status != 206:
            have = 0  # the server sent the whole file: start over
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else size
        with part.open("ab" if have else "wb") as out:
            done = have
            if progress:
                progress(done, total)
            for block in iter(lambda: response.read(CHUNK), b""):
                out.write(block)
                done += len(block)
                if progress:
                    progress(done, total)
    if total is not None and done < total:
        raise ConnectionError(errno.ECONNRESET, f"the connection closed after {done:,} of {total:,} bytes")


def _reason(exc: OSError | http.client.HTTPException) -> str:
    if isinstance(exc, http.client.IncompleteRead):
        return "the connection closed before the end of the file"
    if isinstance(exc, urllib.error.HTTPError):
        return f"the server answered {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"cannot reach the server ({exc.reason})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
