"""The Qt-free core, in rooms along the data's path: capture -> vision (detection, tracking, re-id embedding) ->
identity (matching) -> store, run by the engine; all stand on the foundation modules here (settings, records).

Nothing in this package imports PySide6; the headless CLI and the GUI both drive it through
:func:`reid_desktop.core.engine.runner.run`.
"""
