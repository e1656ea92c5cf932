"""The window's banner: errors and lasting conditions the operator must see, in one strip above the wall."""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget


class MessageBanner(QWidget):
    """A dismissable, non-blocking strip for errors the operator must see (never a modal traceback)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setStyleSheet("background: #7a1f1f; color: white;")
        self.setAutoFillBackground(True)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 4)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setStyleSheet("color: white;")
        layout.addWidget(self.label, 1)
        close = QPushButton("Dismiss")
        close.clicked.connect(self.clear)
        layout.addWidget(close)
        self.messages: list[str] = []
        self._keyed: dict[str, str] = {}  # conditions that last (the database is full): one line each, updated
        self.hide()

    def show_message(self, message: str, key: str | None = None) -> None:
        """Show a line; with ``key``, it replaces that key's previous line until :meth:`clear_key`."""
        if key is not None:
            previous = self._keyed.get(key)
            self._keyed[key] = message
            self.messages = [message if m == previous else m for m in self.messages]
        if message not in self.messages:
            self.messages = [*self.messages[-3:], message]
        self._refresh()

    def clear_key(self, key: str) -> None:
        message = self._keyed.pop(key, None)
        if message in self.messages:
            self.messages.remove(message)
            self._refresh()

    def _refresh(self) -> None:
        self.label.setText("\n".join(self.messages))
        self.setVisible(bool(self.messages))

    def clear(self) -> None:
        self.messages = []
        self._keyed = {}
        self.hide()
