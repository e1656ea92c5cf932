"""Entry point of the ``reid-desktop`` executable: the GUI without a command, the CLI with one.

``reid-desktop`` and ``reid-desktop --demo`` (or ``reid-desktop gui ...``) open the window; every
other first argument (``process``, ``search``, ``models``, ``config``, ``--version``) goes to the
headless CLI, which never imports Qt.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Sequence

import numpy  # noqa: F401  # loaded first: threadpoolctl limits only the libraries already loaded
from threadpoolctl import threadpool_limits

_GUI_FIRST_ARGS = ("gui", "--demo", "--db", "--settings")


def one_blas_thread() -> None:
    """numpy's OpenBLAS threads spin after each product and starve FAISS's OpenMP threads (and the other
    way round) on small machines: the matcher's per-frame product plus an index look-up took 7.7 ms with
    both pools at 2 threads, 3.0 ms with numpy's BLAS on one (bench/scale_bench.py). Its products are
    small, so one thread loses nothing. A user's ``OPENBLAS_NUM_THREADS`` wins."""
    if "OPENBLAS_NUM_THREADS" not in os.environ:
        threadpool_limits(1, user_api="blas")


def main(argv: Sequence[str] | None = None) -> int:
    multiprocessing.freeze_support()
    one_blas_thread()
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
