"""The PySide6 desktop app: widgets and Qt workers wrapping the Qt-free core."""
