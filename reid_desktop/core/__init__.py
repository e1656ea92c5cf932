"""The Qt-free core: sources -> detection/tracking -> re-id embedding -> matching -> storage.

Nothing in this package imports PySide6; the headless CLI and the GUI both drive it through
:func:`reid_desktop.core.engine.runner.run`.
"""
