"""Form widgets built from a setting's declaration (:class:`reid_desktop.core.options.Option`).

The Settings dialog and the Trainer tab show settings through :class:`OptionEditor`, so a range,
choice list or help line is written once, where the setting is declared.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from reid_desktop.core.options import Setting

_INT_LIMIT = 2**31 - 1  # QSpinBox holds a C int
_FLOAT_LIMIT = 1e9


def file_row(edit: QLineEdit, caption: str, pattern: str, save: bool = False) -> QWidget:
    """``edit`` with a Browse… button that fills it from a file dialog."""
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(edit, 1)
    browse = QPushButton("Browse…")

    def pick() -> None:
        picker = QFileDialog.getSaveFileName if save else QFileDialog.getOpenFileName
        path, _ = picker(row, caption, edit.text(), pattern)
        if path:
            edit.setText(path)

    browse.clicked.connect(pick)
    layout.addWidget(browse)
    return row


class OptionEditor(QWidget):
    """The editor of one setting: check box, choice list, spin box or text (with Browse… for files)."""

    def __init__(self, setting: Setting, value: Any = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setting = setting
        self.input = self._input(setting)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        o = setting.option
        if o.file_filter and isinstance(self.input, QLineEdit):
            layout.addWidget(file_row(self.input, setting.label, o.file_filter))
        else:
            layout.addWidget(self.input)
        self.setToolTip(o.help)
        self.set_value(setting.default if value is None else value)

    @staticmethod
    def _input(s: Setting) -> QWidget:
        o = s.option
        if s.kind is bool:
            return QCheckBox()
        if o.choices or o.suggestions:
            combo = QComboBox()
            for label, value in o.suggestions or tuple((c, c) for c in o.choices or ()):
                combo.addItem(label, value)
            return combo
        if s.kind is int:
            spin = QSpinBox()
            spin.setRange(int(o.min) if o.min is not None else -_INT_LIMIT,
                          int(min(o.max, _INT_LIMIT)) if o.max is not None else _INT_LIMIT)
            spin.setSingleStep(int(o.step or 1))
            spin.setSuffix(o.unit)
            spin.setSpecialValueText(o.zero_means if o.min == 0 else "")
            return spin
        if s.kind is float:
            double = QDoubleSpinBox()
            double.setDecimals(4 if o.max is not None and o.max <= 1 else 6)
            double.setRange(float(o.min) if o.min is not None else -_FLOAT_LIMIT,
                            float(o.max) if o.max is not None else _FLOAT_LIMIT)
            double.setSingleStep(o.step or (0.01 if (o.max or 1) <= 1 else 0.1))
            double.setSuffix(o.unit)
            double.setSpecialValueText(o.zero_means if o.min == 0 else "")
            return double
        edit = QLineEdit()
        edit.setPlaceholderText(o.placeholder)
        return edit

    def value(self) -> Any:
        widget = self.input
        if isinstance(widget, QCheckBox):
            return widget.isChecked()
        if isinstance(widget, QComboBox):
            return widget.currentData()
        if isinstance(widget, QSpinBox):
            return widget.value()
        if isinstance(widget, QDoubleSpinBox):
            return round(widget.value(), widget.decimals())
        assert isinstance(widget, QLineEdit)
        return widget.text().strip()

    def set_value(self, value: Any) -> None:
        widget = self.input
        if isinstance(widget, QCheckBox):
            widget.setChecked(bool(value))
        elif isinstance(widget, QComboBox):
            index = widget.findData(value)
            if index < 0:  # a value from a settings file that the list does not offer: shown as it is
                widget.addItem(str(value), value)
                index = widget.count() - 1
            widget.setCurrentIndex(index)
        elif isinstance(widget, (QSpinBox, QDoubleSpinBox)):
            widget.setValue(value)
        elif isinstance(widget, QLineEdit):
            widget.setText(str(value))

    def reset(self) -> None:
        self.set_value(self.setting.default)
