"""``reid-desktop models``: the models in use, the catalogue, downloads, imports and the detector's runtimes."""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from reid_desktop import __version__
from reid_desktop.cli.common import EXIT_BUSY, EXIT_MODEL, EXIT_OK, EXIT_USAGE
from reid_desktop.cli.common import where as _where
from reid_desktop.core import config as config_mod
from reid_desktop.core.errors import ModelError
from reid_desktop.core.paths import build_description, data_dir, models_dir
from reid_desktop.core.store.history import open_store
from reid_desktop.core.store.interface import StoreError
from reid_desktop.core.store.locking import DatabaseInUse, WriterLock
from reid_desktop.core.vision import detector_runtimes as runtimes
from reid_desktop.core.vision import model_catalogue as catalogue
from reid_desktop.core.vision.detection import bundled_detector_path
from reid_desktop.core.vision.embedding import OnnxEmbedder, read_model_info
from reid_desktop.core.vision.models import choose_reid_model, chosen_reid_model, default_reid_model_path
from reid_desktop.core.vision.ort_runner import candidate_providers
from trainer.default_model import build_default_reid_model

if TYPE_CHECKING:
    from trainer.model_import import ImportedModel  # PyTorch: imported only where a model is converted


def _models_build_default(args: argparse.Namespace) -> int:
    from trainer.model import WeightsUnavailable  # PyTorch: imported only to build a model

    target = Path(args.output) if args.output else default_reid_model_path()
    if target.exists() and not args.force:
        print(f"{target} already exists (use --force to rebuild)")
        return EXIT_OK
    try:
        path = build_default_reid_model(args.weights, allow_download=not args.no_download, output=target)
    except (WeightsUnavailable, ModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_MODEL
    print(f"wrote {path}")
    return EXIT_OK


def _ask(question: str, assume_yes: bool) -> bool:
    """A yes/no question on the terminal; without one (scripts, CI) only ``--yes`` answers it."""
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        print(f"{question} [y/N]: no terminal to answer on; pass --yes to accept", file=sys.stderr)
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def _models_download(args: argparse.Namespace) -> int:
    from trainer.model_import import install  # PyTorch: converting needs it

    entry = catalogue.entry(args.name)
    print(f"{entry.name}: {entry.describe()}")
    print(f"  from {entry.url}")
    print(f"  licence: {entry.licence}")
    if not _ask("Download it and accept these terms?", args.yes):
        print("nothing downloaded")
        return EXIT_USAGE
    if args.progress == "lines":  # for the window, which reads them from this child process
        shown = [0.0]

        def progress(done: int, total: int | None) -> None:
            if time.monotonic() - shown[0] >= 0.25 or done == total:
                shown[0] = time.monotonic()
                print(f"[download] {done} {total or 0}", flush=True)

        model = install(entry, progress=progress, say=lambda line: print(line, flush=True), url=args.url)
        return _installed(model, args.no_default)
    with tqdm(unit="B", unit_scale=True, unit_divisor=1024, desc=entry.filename, leave=False,
              disable=args.progress == "none") as bar:
        def progress_bar(done: int, total: int | None) -> None:
            bar.total = total
            bar.update(done - bar.n)

        model = install(entry, progress=progress_bar, url=args.url,
                        say=lambda line: tqdm.write(line) if args.progress == "bar" else None)
    return _installed(model, args.no_default)


def _models_import(args: argparse.Namespace) -> int:
    from trainer.model_import import import_checkpoint  # PyTorch: converting needs it

    source = Path(args.checkpoint)
    name = args.name or source.stem
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        print(f"error: a model name may hold letters, digits, '.', '_' and '-' only, not {name!r}", file=sys.stderr)
        return EXIT_USAGE
    model = import_checkpoint(source, models_dir() / f"{name}.onnx", args.format)
    return _installed(model, args.no_default)


def _installed(model: ImportedModel, keep_default: bool) -> int:
    print(f"installed {model.path} ({model.source_format} {model.architecture}, {model.info.embedding_dim}-d, "
          f"input {model.info.input_height}x{model.info.input_width}; PyTorch and ONNX Runtime agree: lowest cosine "
          f"{model.parity_cosine:.6f})")
    if keep_default:
        print(f"to use it: --reid-model {model.path}")
    else:
        choose_reid_model(model.path)
        print("it is now the default re-id model (a configured reid.model still comes first)")
    return EXIT_OK


def _models_check(args: argparse.Namespace) -> int:
    try:
        embedder = OnnxEmbedder(Path(args.path))
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_MODEL
    i = embedder.info
    print(f"{embedder.name}: OK, input {i.input_height}x{i.input_width} {i.channel_order}, "
          f"{embedder.dim}-d embeddings, weights: {i.weights}, provider: {embedder.provider} "
          f"({embedder.precision.upper()})")
    return EXIT_OK


def _detector_cache(args: argparse.Namespace) -> runtimes.DetectorCache | None:
    cfg = config_mod.load(overrides={"detector.imgsz": args.imgsz, **({"detector.model": args.detector}
                                                                     if args.detector else {})})
    checkpoint = runtimes.checkpoint_of(cfg.detector)
    if checkpoint is not None and not checkpoint.is_file():
        raise ModelError(f"detector model not found: {checkpoint}")
    return runtimes.DetectorCache(checkpoint, args.imgsz) if checkpoint else None


def _print_runtimes(cache: runtimes.DetectorCache) -> None:
    best = cache.fastest()
    print(f"detector runtimes for {cache.checkpoint.stem} at {cache.imgsz} px (frames/s at batch 1, measured here):")
    for variant in runtimes.candidates():
        record = cache.record(variant)
        if record is None:
            print(f"  {variant.label:<20} not prepared")
            continue
        verdict = "" if record.passed else f"  REFUSED (needs {runtimes.MIN_AGREEMENT:.0%})"
        chosen = "  <- auto" if best is not None and record.variant == best.variant else ""
        print(f"  {variant.label:<20} {record.frames_per_s:6.1f} frames/s  agrees {record.agreement:6.1%} with "
              f"the original{verdict}{chosen}")
    if best is None:
        print("  auto runs PyTorch until runtimes are prepared: reid-desktop models prepare-detector")


def _models_prepare_detector(args: argparse.Namespace) -> int:
    cache = _detector_cache(args)
    if cache is None:
        print("error: the detector is already an export (.onnx); runtimes are prepared from a .pt checkpoint",
              file=sys.stderr)
        return EXIT_USAGE
    cfg = config_mod.load(overrides={"detector.imgsz": args.imgsz, "detector.model": str(cache.checkpoint)})
    offered = cache.unprepared() if args.missing else runtimes.candidates()
    if args.only:
        keys = set(args.only.split(","))
        offered = [v for v in offered if v.key in keys]
    wanted = runtimes.fastest_first([v for v in offered if args.runtime in (None, v.runtime)
                                     and args.precision in (None, v.precision)])
    if not wanted and args.missing:
        _print_runtimes(cache)
        return EXIT_OK
    if not wanted:
        print(f"error: no {args.runtime or ''} {args.precision or ''} variant runs on this machine; it has: "
              f"{', '.join(v.label for v in runtimes.candidates())}", file=sys.stderr)
        return EXIT_USAGE
    cache.folder.mkdir(parents=True, exist_ok=True)
    try:
        with WriterLock(cache.folder / "preparation"):  # two processes exporting into one folder would mix files
            _prepare_each(cache, wanted, cfg.detector)
    except DatabaseInUse:
        print(f"error: another process is preparing the runtimes of {cache.checkpoint.name} at {cache.imgsz} px; "
              "they are used when it is done", file=sys.stderr)
        return EXIT_BUSY
    _print_runtimes(cache)
    return EXIT_OK


def _prepare_each(cache: runtimes.DetectorCache, wanted: list[runtimes.Variant],
                  config: config_mod.DetectorConfig) -> None:
    """One variant after the other, each line numbered ``[n/total]`` (the window's and the engine's progress)."""
    for number, variant in enumerate(wanted, start=1):
        def say(line: str, step: str = f"[{number}/{len(wanted)}]") -> None:
            print(f"{step} {line}", flush=True)

        try:
            cache.prepare(variant, config, say)
        except ModelError as exc:
            print(f"error: {variant.label}: {exc}", file=sys.stderr)


def _models_list(args: argparse.Namespace) -> int:
    import onnxruntime as ort  # heavy, and only this listing needs its version

    try:
        detector = str(bundled_detector_path())
    except ModelError as exc:
        detector = f"missing ({exc})"
    default = default_reid_model_path()
    chosen = chosen_reid_model()
    print(f"reid-desktop {__version__}: {build_description()}; user data in {data_dir()}")
    print(f"detector (bundled): {detector}")
    if chosen is not None:
        print(f"re-id default:      {chosen} ({_model_summary(chosen)})")
    else:
        state = (f"{default} (ImageNet features, not trained for re-id)" if default.exists()
                 else "none installed: the colour-texture descriptor runs")
        print(f"re-id default:      {state}; get a re-id-trained model: "
              f"reid-desktop models download {catalogue.RECOMMENDED}")
    print("re-id catalogue (reid-desktop models download NAME):")
    for item in catalogue.CATALOGUE:
        mark = "installed" if catalogue.installed_path(item.name).exists() else ""
        star = "*" if item.name == catalogue.RECOMMENDED else " "
        print(f"  {star}{item.name:<27} {item.figures:<48} {item.input_height}x{item.input_width}  {mark}")
    print(f"onnxruntime {ort.__version__}: providers built in: {', '.join(ort.get_available_providers())}")
    print(f"                    usable here: {', '.join(candidate_providers('auto'))}")
    cache = _detector_cache(args)
    if cache is not None:
        _print_runtimes(cache)
    if args.db:
        return _print_database(args.db)
    return EXIT_OK


def _print_database(database: str) -> int:
    """The history ``--db`` names: which backend, and how appearance search runs on it."""
    try:
        store = open_store(database, readonly=True)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    with store:
        print(f"database: {store.backend}, {_where(store)}; vector search: {store.vector_search()}")
    return EXIT_OK


def _model_summary(path: Path) -> str:
    """What a model file says it is, from its metadata alone (no session)."""
    try:
        info, _ = read_model_info(path)
    except ModelError as exc:
        return f"unusable: {exc}"
    return f"{info.describe()}; weights: {info.weights}"


def cmd_models(args: argparse.Namespace) -> int:
    commands = {"build-default": _models_build_default, "check": _models_check, "download": _models_download,
                "import": _models_import, "prepare-detector": _models_prepare_detector, "list": _models_list}
    try:
        return commands[args.models_command](args)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_MODEL


def add_parser(sub: Any) -> None:
    """The ``models`` command and its subcommands."""
    m = sub.add_parser("models", help="list, check or build models")
    m.set_defaults(func=cmd_models, models_command="list", imgsz=config_mod.DetectorConfig().imgsz, detector=None,
                   db=None)
    msub = m.add_subparsers(dest="models_command")
    ls = msub.add_parser("list", help="show the models in use, the ONNX Runtime providers and the detector runtimes")
    pd = msub.add_parser("prepare-detector", help="export the detector to the faster runtimes, check each against "
                                                 "the original and measure it here (what 'auto' chooses from)")
    ls.add_argument("--db", help="also describe this history: SQLite file or postgresql:// URL")
    for sp in (ls, pd):
        sp.add_argument("--imgsz", type=int, default=config_mod.DetectorConfig().imgsz, help="detector image size")
        sp.add_argument("--detector", help="a .pt checkpoint (default: the bundled YOLO11n-pose)")
    pd.add_argument("--runtime", choices=sorted(runtimes.RUNTIME_LABELS), help="only this runtime")
    pd.add_argument("--precision", choices=("fp32", "fp16", "int8"), help="only this precision")
    pd.add_argument("--missing", action="store_true", help="only the variants not yet checked on this machine "
                                                           "(resumes an interrupted preparation)")
    pd.add_argument("--only", metavar="KEYS", help="only these variants, e.g. openvino-fp16,onnxruntime-int8 (what "
                                                   "the app's background preparation asks for)")
    b = msub.add_parser("build-default", help="export an ImageNet ResNet-50 to ONNX (not trained for re-id: "
                                                  "prefer 'models download')")
    b.add_argument("--weights", help="ImageNet ResNet-50 state dict (.pth); default: torchvision download")
    b.add_argument("--output", help="where to write the ONNX file (default: the app's model folder)")
    b.add_argument("--no-download", action="store_true", help="fail instead of downloading weights")
    b.add_argument("--force", action="store_true", help="rebuild even if the model exists")
    c = msub.add_parser("check", help="validate a re-id ONNX model and show what it declares")
    c.add_argument("path")
    d = msub.add_parser("download", help="download a re-id model of the catalogue ('models list'), verify and "
                                         "convert it, and make it the default")
    d.add_argument("name", choices=[e.name for e in catalogue.CATALOGUE], metavar="NAME")
    d.add_argument("--yes", action="store_true", help="accept the licence note without asking")
    d.add_argument("--url", help="download from this mirror instead of the catalogue's address")
    d.add_argument("--progress", choices=("bar", "lines", "none"), default="bar",
                   help="a progress bar, '[download] DONE TOTAL' lines (for programs), or nothing")
    im = msub.add_parser("import", help="convert a FastReID, torchreid or BoxMOT re-id checkpoint to the app's "
                                        "ONNX format and make it the default")
    im.add_argument("checkpoint")
    im.add_argument("--format", choices=("fastreid", "torchreid", "boxmot"), help="default: recognised from the keys")
    im.add_argument("--name", help="the installed model's name (default: the checkpoint's file name)")
    for sp in (d, im):
        sp.add_argument("--no-default", action="store_true", help="install it but keep the current default")
