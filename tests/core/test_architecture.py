"""The core must run without Qt: the headless CLI and the trainer depend on it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from tests.conftest import ROOT


def test_core_and_cli_import_without_pyside6() -> None:
    code = (
        "import sys\n"
        "sys.modules['PySide6'] = None  # any import of PySide6 now raises ImportError\n"
        "import reid_desktop.cli, reid_desktop.core.engine.pipeline, reid_desktop.core.store.storage\n"
        "import trainer.export, trainer.model\n"
        "assert not any(m.startswith('PySide6') for m in sys.modules if sys.modules[m] is not None)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_import_contracts_hold() -> None:
    lint = shutil.which("lint-imports", path=str(ROOT / ".venv" / "bin")) or shutil.which("lint-imports")
    assert lint, "import-linter is a dev dependency"
    out = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def test_the_blas_thread_limit_is_set_by_the_app_at_start_not_by_an_import() -> None:
    code = (
        "import os, threadpoolctl\n"
        "import reid_desktop, reid_desktop.core.engine.pipeline, reid_desktop.cli\n"
        "assert 'OPENBLAS_NUM_THREADS' not in os.environ\n"
        "from reid_desktop.app import one_blas_thread\n"
        "one_blas_thread()\n"
        "blas = [p['num_threads'] for p in threadpoolctl.threadpool_info() if p['user_api'] == 'blas']\n"
        "assert blas and set(blas) == {1}, blas\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_the_import_graph_has_no_cycles() -> None:
    """Every module can be understood from the ones below it (imports inside functions count too)."""
    import graphlib

    import grimp

    graph = grimp.build_graph("reid_desktop", "trainer")
    order = graphlib.TopologicalSorter({m: graph.find_modules_directly_imported_by(m) for m in graph.modules})
    try:
        order.prepare()
    except graphlib.CycleError as exc:
        raise AssertionError(f"import cycle: {' -> '.join(exc.args[1])}") from None
