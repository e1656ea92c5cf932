"""The window's cameras: one record per camera, kept without Qt so it is tested on its own.

What the engine opens is the camera's :class:`SourceSpec`, the record the CLI and a node file make too (its name,
full address with its secrets, in memory only, region, pace and analysis rate). Beside it, one :class:`Camera`
holds what only the window knows (paused, last known state and reason) and the camera's saved form (what the
settings file holds), so adding, renaming, pausing and removing change them together. Secrets go to the OS keyring
through :mod:`reid_desktop.core.credentials`; the saved form never holds one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from reid_desktop.core import credentials
from reid_desktop.core.capture.sources import SourceSpec
from reid_desktop.core.redaction import has_secrets, join_credentials, redact, strip_secrets
from reid_desktop.core.types import SourceState, SourceStatus
from reid_desktop.ui.settings import SavedSource


class CameraError(ValueError):
    """An operation the camera list refuses (a name already taken); the message says so."""


@dataclass
class Camera:
    spec: SourceSpec  # its uri is the full address, with credentials: never written anywhere but the keyring
    paused: bool = False
    saved: SavedSource | None = None  # its entry in the settings; None: this session only (--demo, command line)
    state: SourceState = SourceState.CONNECTING
    reason: str = ""  # why it is in that state (the last error of a failed camera)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def uri(self) -> str:
        return self.spec.uri

    @property
    def transient(self) -> bool:
        return self.saved is None


@dataclass(frozen=True)
class Added:
    camera: Camera
    warning: str = ""  # the credentials could not be kept (no keyring): the operator must be told


class CameraList:
    """The cameras in the order they were added; names are unique."""

    def __init__(self) -> None:
        self._cameras: dict[str, Camera] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._cameras

    def __getitem__(self, name: str) -> Camera:
        return self._cameras[name]

    def __iter__(self) -> Iterator[Camera]:
        return iter(list(self._cameras.values()))

    def __len__(self) -> int:
        return len(self._cameras)

    def get(self, name: str) -> Camera | None:
        return self._cameras.get(name)

    def names(self) -> list[str]:
        return list(self._cameras)

    def unique_name(self, base: str) -> str:
        name, n = base, 2
        while name in self._cameras:
            name, n = f"{base}-{n}", n + 1
        return name

    def add(self, uri: str, name: str = "", *, username: str = "", password: str = "", paused: bool = False,
            persist: bool = True, every_frame: bool = False) -> Added:
        """A new camera under a unique name (from ``name``, else from the address).

        Persistent cameras get a saved form without secrets; their secrets go to the keyring.
        """
        full = join_credentials(uri, username, password)
        name = self.unique_name(redact(name) or SourceSpec(full).source_id)
        camera = Camera(SourceSpec(full, name, realtime=not every_frame), paused)  # a video file plays at its pace
        warning = ""
        if persist:
            secret = has_secrets(full)
            kept = secret and credentials.save_secret_url(name, full)
            if secret and not kept:
                warning = (f"No system keyring: the credentials of {name} are used now but not saved; you will be "
                           "asked to add the camera again next time.")
            camera.saved = SavedSource(name, strip_secrets(full), "", kept, paused, analyse_every_frame=every_frame)
        self._cameras[name] = camera
        return Added(camera, warning)

    def add_session(self, spec: SourceSpec) -> Added:
        """A camera for this session only (``--demo``, files on the command line), as the spec says."""
        added = self.add(spec.uri, spec.name, persist=False)
        added.camera.spec = replace(spec, name=added.camera.name)
        return added

    def restore(self, saved: SavedSource) -> Added:
        """A camera from the settings, its secrets read back from the keyring."""
        full = join_credentials(saved.uri, saved.username, "")
        warning = ""
        if saved.has_password:
            full = credentials.load_secret_url(saved.name, saved.uri, saved.username) or full
            if full == saved.uri:
                warning = (f"The credentials of {saved.name} are not in the system keyring: remove the camera and "
                           "add it again.")
        camera = Camera(SourceSpec(full, saved.name, realtime=not saved.analyse_every_frame,
                                   analysis_fps=saved.analysis_fps), saved.paused, saved)
        self._cameras[saved.name] = camera
        return Added(camera, warning)

    def remove(self, name: str) -> Camera | None:
        camera = self._cameras.pop(name, None)
        if camera is not None and camera.saved is not None:
            credentials.forget_secret(name)
        return camera

    def rename(self, old: str, new: str) -> Camera:
        """The camera under its new name, in the same place in the list; its keyring entry follows it."""
        if new in self._cameras:
            raise CameraError(f"There is already a camera named {new}")
        camera = self._cameras[old]
        camera.spec = replace(camera.spec, name=new)
        self._cameras = {(new if key == old else key): value for key, value in self._cameras.items()}
        if camera.saved is not None:
            camera.saved.name = new
            if camera.saved.has_password:
                credentials.save_secret_url(new, camera.uri)
                credentials.forget_secret(old)
        return camera

    def set_every_frame(self, name: str, every_frame: bool) -> Camera:
        """A video file analysed frame by frame (slower than its pace), or played in real time."""
        camera = self._cameras[name]
        camera.spec = replace(camera.spec, realtime=not every_frame)
        if camera.saved is not None:
            camera.saved.analyse_every_frame = every_frame
        return camera

    def set_analysis_rate(self, name: str, frames_per_s: float | None) -> Camera:
        """At most this many frames analysed a second (0: as many as the machine manages; None: the setting
        for all cameras)."""
        camera = self._cameras[name]
        camera.spec = replace(camera.spec, analysis_fps=frames_per_s)
        if camera.saved is not None:
            camera.saved.analysis_fps = frames_per_s
        return camera

    def set_paused(self, name: str, paused: bool) -> Camera:
        camera = self._cameras[name]
        camera.paused = paused
        if camera.saved is not None:
            camera.saved.paused = paused
        return camera

    def update(self, status: SourceStatus) -> Camera | None:
        """Record what the engine says of a camera; None for a camera no longer in the list."""
        camera = self._cameras.get(status.source_id)
        if camera is not None:
            camera.state, camera.reason = status.state, status.reason
        return camera

    def specs(self) -> list[SourceSpec]:
        return [c.spec for c in self._cameras.values()]

    def paused(self) -> set[str]:
        return {c.name for c in self._cameras.values() if c.paused}

    def saved(self) -> list[SavedSource]:
        """What the settings file keeps: the persistent cameras, in order, without secrets."""
        return [c.saved for c in self._cameras.values() if c.saved is not None]


AS_FAST_AS_POSSIBLE = "As many as the machine manages"


def rate_text(frames_per_s: float) -> str:
    return AS_FAST_AS_POSSIBLE if frames_per_s == 0 else f"{frames_per_s:g} frames/s"


def rate_choices(everyone: float) -> list[str]:
    """The analysis rates offered for a camera: the setting for all cameras first, then common rates."""
    common = rate_text(everyone)
    return [f"Same as all cameras ({common[0].lower()}{common[1:]})",
            AS_FAST_AS_POSSIBLE, *(rate_text(r) for r in (1, 2, 5, 10, 15))]


def parse_rate(text: str, everyone: float) -> float | None:
    """A chosen or typed analysis rate: None for the setting of all cameras, 0 for no limit, else frames/s."""
    text = text.strip()
    if text == rate_choices(everyone)[0]:
        return None
    if text == AS_FAST_AS_POSSIBLE:
        return 0.0
    number = text.removesuffix("frames/s").strip().replace(",", ".")
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"“{text}” is not a rate: type a number of frames a second, such as 5") from None
    if not 0.0 <= value <= 1000.0:
        raise ValueError(f"{value:g} frames a second is out of range (0 to 1000; 0: as many as possible)")
    return value
