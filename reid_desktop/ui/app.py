"""Start the GUI: settings, QApplication, main window."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from reid_desktop import __version__
from reid_desktop.core import logs
from reid_desktop.core.store.database_url import is_postgres_url


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reid-desktop", description="Open the reid-desktop window.")
    parser.add_argument("files", nargs="*", help="video files to open for this session (not saved)")
    parser.add_argument("--demo", action="store_true",
                        help="open the demo: two looping cameras cut from the bundled clip")
    parser.add_argument("--db", help="sightings database to use, a SQLite file or postgresql://user@host/database "
                                     "(remembered in the settings)")
    parser.add_argument("--settings", help="settings file (default: the per-user config folder)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.WARNING if args.verbose == 0 else logging.INFO if args.verbose == 1 else logging.DEBUG
    logs.configure(level, logs.default_log_file())  # unattended for weeks: a bounded, private log file too

    from reid_desktop.ui.qt_env import sanitize_qt_environment

    sanitize_qt_environment()
    from PySide6.QtWidgets import QApplication

    from reid_desktop.core.capture.sources import DEMO_LINKS, SourceSpec, demo_sources
    from reid_desktop.core.paths import assets_dir
    from reid_desktop.ui.main_window import MainWindow
    from reid_desktop.ui.settings import load_settings, settings_path

    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
    app.setApplicationName("reid-desktop")
    app.setApplicationVersion(__version__)
    icon = assets_dir() / "icons" / "reid-desktop.png"
    if icon.exists():
        from PySide6.QtGui import QIcon

        app.setWindowIcon(QIcon(str(icon)))
    settings_file = Path(args.settings) if args.settings else settings_path()
    settings, warning = load_settings(settings_file)
    if args.db:
        settings.database = args.db if is_postgres_url(args.db) else str(Path(args.db).resolve())
    extra = demo_sources() if args.demo else []
    extra += [SourceSpec(str(Path(f).resolve()), realtime=True) for f in args.files]
    window = MainWindow(settings, settings_file, extra, warning, session_links=DEMO_LINKS if args.demo else "")
    window.show()
    for signum in (signal.SIGINT, signal.SIGTERM):  # Ctrl+C or a shutdown closes cleanly, store flushed
        signal.signal(signum, lambda *_: window.close())
    # let Python see SIGINT while Qt's loop runs
    from PySide6.QtCore import QTimer

    heartbeat = QTimer()
    heartbeat.start(250)
    heartbeat.timeout.connect(lambda: None)
    return int(app.exec())
