"""``reid-trainer``: train | eval | export | search | dataset.

``--events`` prints one JSON object per line on stdout (the versioned format of :mod:`trainer.events`):
the GUI's Trainer tab runs this command as a subprocess and plots what it reads. Exit status:
0 done; 1 stopped before the end; 2 bad options; 3 unusable data set or model; 4 diverged;
130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trainer import config as config_mod
from trainer import events
from trainer.events import Event

log = logging.getLogger("trainer")

EXIT_OK, EXIT_STOPPED, EXIT_USAGE, EXIT_DATA, EXIT_DIVERGED, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130


class EventPrinter:
    """JSON lines on stdout with ``--events`` (:func:`trainer.events.encode`); otherwise a progress bar and
    short lines on stderr."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self._bar: Any = None

    def __call__(self, event: Event) -> None:
        if self.as_json:
            print(events.encode(event), flush=True)
            return
        match event:
            case events.Started():
                print(f"training on {event.dataset}: {event.identities} identities, {event.images} images, "
                      f"{event.epochs} epochs x {event.steps_per_epoch} steps on {event.device} ({event.weights}); "
                      f"run folder {event.run_dir}", file=sys.stderr)
            case events.Step():
                self._progress(event)
            case events.Evaluated():
                self._close_bar()
                print(f"epoch {event.epoch}: Rank-1 {event.rank1:.1%}  Rank-5 {event.rank5:.1%}  "
                      f"Rank-10 {event.rank10:.1%}  mAP {event.mAP:.1%}", file=sys.stderr)
            case events.Warned():
                print(f"warning: {event.message}", file=sys.stderr)
            case events.TrialEnded():
                self._close_bar()
                score = f"mAP {event.mAP:.1%}" if event.mAP is not None else ""
                print(f"trial {event.number}: lr {event.lr:g}, batch {event.batch_size}: {event.status} {score}",
                      file=sys.stderr)
            case events.Finished():
                self._close_bar()

    def _progress(self, event: events.Step) -> None:
        from tqdm import tqdm

        if self._bar is None or self._bar.desc != f"epoch {event.epoch}":
            self._close_bar()
            self._bar = tqdm(total=event.steps, desc=f"epoch {event.epoch}", unit="step", file=sys.stderr)
        self._bar.n = event.step
        self._bar.set_postfix(loss=f"{event.loss:.3f}", lr=f"{event.lr:.2g}", refresh=False)
        self._bar.refresh()

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _stop_on_signals() -> threading.Event:
    """SIGTERM / SIGINT finish the current step, keep the last checkpoint and exit 1 (resumable)."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def cmd_dataset(args: argparse.Namespace) -> int:
    from trainer.datasets import DatasetError, load_dataset

    try:
        if args.from_store:
            from trainer.store_export import export_store_dataset

            summary = export_store_dataset(args.from_store, Path(args.path))  # a file or a postgresql:// URL
            print(f"exported {summary.identities} confirmed identities: {summary.train_images} training, "
                  f"{summary.test_images} test and {summary.query_images} query images to {summary.out_dir}")
            for reason in summary.skipped[:10]:
                print(f"  note: {reason}")
        dataset = load_dataset(args.path, verify_images=not args.no_verify)
    except (DatasetError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_DATA
    print(dataset.summary())
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    from trainer.datasets import DatasetError
    from trainer.model import WeightsUnavailable
    from trainer.train import DivergenceError, train

    printer = EventPrinter(args.events)
    try:
        cfg = config_mod.from_arguments(args) if not args.resume else config_mod.TrainConfig()
        if not args.resume and not cfg.data:
            raise ValueError("--data is required (or --resume CHECKPOINT)")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    stop = _stop_on_signals()
    try:
        result = train(cfg, printer, stop.is_set, Path(args.resume) if args.resume else None)
    except DivergenceError as exc:
        printer(events.Failed(reason="diverged", message=str(exc)))
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_DIVERGED
    except (DatasetError, WeightsUnavailable, ValueError, FileNotFoundError) as exc:
        printer(events.Failed(reason="input", message=str(exc)))
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_DATA
    return EXIT_OK if result.status == "finished" else EXIT_STOPPED


def cmd_eval(args: argparse.Namespace) -> int:
    from trainer.datasets import DatasetError, load_dataset

    try:
        dataset = load_dataset(args.data)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_DATA
    model = Path(args.model)
    if model.suffix == ".onnx":
        from trainer.evaluate_onnx import evaluate_onnx

        metrics = evaluate_onnx(model, dataset).to_dict()
    else:
        from trainer.train import TrainConfig, evaluate_model, load_trained, resolve_device

        network, checkpoint = load_trained(model)
        cfg = TrainConfig.from_dict(checkpoint["config"])
        device = resolve_device(args.device)
        metrics = evaluate_model(network.to(device), dataset, cfg, device).to_dict()
    print(json.dumps(metrics, indent=1) if args.json else
          f"Rank-1 {metrics['rank1']:.1%}  Rank-5 {metrics['rank5']:.1%}  Rank-10 {metrics['rank10']:.1%}  "
          f"mAP {metrics['mAP']:.1%}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from trainer.export import export_checkpoint

    dataset = None
    if args.data:
        from trainer.datasets import load_dataset

        dataset = load_dataset(args.data)
    results = export_checkpoint(Path(args.checkpoint), Path(args.output), fp16=args.fp16, int8=args.int8,
                                dataset=dataset)
    for r in results:
        accuracy = (f"  Rank-1 {r.metrics['rank1']:.1%}  mAP {r.metrics['mAP']:.1%}" if r.metrics else "")
        print(f"{r.variant:5s} {r.path}  {r.size_mb:.1f} MB  max |diff| {r.max_abs_diff:.2e}{accuracy}")
    return EXIT_OK


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v.strip())


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def cmd_search(args: argparse.Namespace) -> int:
    from trainer.datasets import DatasetError
    from trainer.search import SearchSettings, format_table, run_search

    printer = EventPrinter(args.events)
    try:
        base = config_mod.from_arguments(args)
        if not base.data:
            raise ValueError("--data is required")
        settings = SearchSettings(args.sampler, _floats(args.lrs), _ints(args.batch_sizes), args.trials,
                                  args.storage, args.study, not args.no_prune, args.seed)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    folder = Path(args.folder) if args.folder else _default_search_folder(args.study)
    stop = _stop_on_signals()
    try:
        rows = run_search(base, settings, folder, printer, stop.is_set)
    except (DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_DATA
    if not args.events:
        print(format_table(rows))
    return EXIT_STOPPED if stop.is_set() else EXIT_OK


def _default_search_folder(study: str) -> Path:
    from reid_desktop.core.paths import data_dir

    return data_dir() / "search" / study


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reid-trainer", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("-v", "--verbose", action="count", default=0)
    sub = parser.add_subparsers(dest="command", required=True)

    d = sub.add_parser("dataset", help="check a data set and print its identities, images and cameras")
    d.add_argument("path", help="the data set folder (with --from-store: where to write it)")
    d.add_argument("--no-verify", action="store_true", help="do not open every image")
    d.add_argument("--from-store", metavar="DATABASE", help="first export the operator-confirmed identities (named "
                   "or targeted) of this sightings database as a Market-1501-layout data set")
    d.set_defaults(func=cmd_dataset)

    t = sub.add_parser("train", help="train a ResNet-50 re-id model",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    config_mod.add_arguments(t)
    t.add_argument("--resume", metavar="CHECKPOINT", help="continue a run from its last.pt (other options ignored)")
    t.add_argument("--events", action="store_true", help="JSON lines on stdout instead of a progress bar")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("search", help="hyper-parameter search with Optuna (learning rate x batch size)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    config_mod.add_arguments(s, skip=("lr", "batch_size", "output"))
    s.add_argument("--sampler", choices=["grid", "tpe"], default="grid", help="grid: every lr x batch; tpe: Bayesian")
    s.add_argument("--lrs", default="0.01,0.03,0.06,0.09,0.12,0.2",
                   help="grid learning rates; TPE searches log-uniformly between their min and max")
    s.add_argument("--batch-sizes", default="8,16,32,64", help="batch sizes to try")
    s.add_argument("--trials", type=int, default=0, help="trials to run here (0: whole grid / 20 for TPE)")
    s.add_argument("--storage", default="", help="Optuna storage URL shared by several machines, e.g. "
                                                 "postgresql://user@host/db (default: SQLite in the study folder)")
    s.add_argument("--study", default="reid-search", help="study name (trials of one study are pooled)")
    s.add_argument("--folder", help="where trial runs go (default: the per-user data folder)")
    s.add_argument("--no-prune", action="store_true", help="never stop hopeless trials early")
    s.add_argument("--events", action="store_true", help="JSON lines on stdout")
    s.set_defaults(func=cmd_search)

    e = sub.add_parser("eval", help="Rank-1/5/10 and mAP of a checkpoint (.pt) or an exported model (.onnx)")
    e.add_argument("model")
    e.add_argument("--data", required=True)
    e.add_argument("--device", default="auto")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_eval)

    x = sub.add_parser("export", help="export a checkpoint to ONNX with metadata, parity check and variants")
    x.add_argument("checkpoint")
    x.add_argument("--output", required=True, help="model.onnx")
    x.add_argument("--fp16", action="store_true", help="also write an FP16 variant")
    x.add_argument("--int8", action="store_true", help="also write an INT8 (dynamic quantisation) variant")
    x.add_argument("--data", help="measure each variant's accuracy on this data set")
    x.set_defaults(func=cmd_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.verbose == 0 else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    from trainer.train import CheckpointError

    try:
        result: int = args.func(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return result


if __name__ == "__main__":
    sys.exit(main())
