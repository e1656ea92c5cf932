"""Entry point of the ``reid-desktop`` executable: the GUI without a command, the CLI with one.

``reid-desktop`` and ``reid-desktop --demo`` (or ``reid-desktop gui ...``) open the window; every
other first argument (``process``, ``search``, ``models``, ``config``, ``--version``) goes to the
headless CLI, which never imports Qt.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Sequence

_GUI_FIRST_ARGS = ("gui", "--demo", "--db", "--settings")


def main(argv: Sequence[str] | None = None) -> int:
    multiprocessing.freeze_support()
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "trainer":  # hidden: how the GUI runs the trainer, also from a frozen bundle
        from trainer.cli import main as trainer_main

        return trainer_main(args[1:])
    if not args or args[0] in _GUI_FIRST_ARGS:
        from reid_desktop.ui.app import main as gui_main

        return gui_main(args[1:] if args and args[0] == "gui" else args)
    from reid_desktop.cli import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())
