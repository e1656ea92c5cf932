"""``reid-desktop models download | import | list`` end to end: a loopback server instead of GitHub, real conversion."""

from __future__ import annotations

import json
import re

import pytest
import torch

from reid_desktop import cli
from reid_desktop.core.config import ReidConfig
from reid_desktop.core.paths import models_dir
from reid_desktop.core.vision import model_catalogue as catalogue
from reid_desktop.core.vision.downloads import part_path
from reid_desktop.core.vision.embedding import OnnxEmbedder
from reid_desktop.core.vision.models import chosen_reid_model, load_embedder
from tests.tools.file_server import serve
from tests.trainer.test_zoo import fastreid_network, randomised

NAME = "fastreid-msmt-bot-r50-ibn"


@pytest.fixture(scope="module")
def fastreid_checkpoint(tmp_path_factory) -> bytes:
    """A FastReID v0.1.1 BoT(R50-ibn) checkpoint as its release would hold it (random weights)."""
    path = tmp_path_factory.mktemp("ckpt") / "msmt_bot_R50-ibn.pth"
    state = randomised(fastreid_network("bot-r50-ibn")) | {"heads.classifier.weight": torch.rand(1041, 2048)}
    torch.save({"model": state}, path)
    return path.read_bytes()


def download(url: str, *extra: str) -> int:
    return cli.main(["models", "download", NAME, "--url", url, "--progress", "none", *extra])


def test_the_catalogue_entries_are_well_formed():
    names = [e.name for e in catalogue.CATALOGUE]
    assert len(set(names)) == len(names) >= 12 and catalogue.RECOMMENDED in names
    for item in catalogue.CATALOGUE:
        assert re.fullmatch(r"https://github\.com/JDAI-CV/fast-reid/releases/download/v0\.1\.1/"
                            r"(market|duke|msmt)_(bot|sbs)_R50(-ibn)?\.pth", item.url), item.url
        assert item.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", item.sha256)
        assert item.size_bytes is None or item.size_bytes > 10_000_000
        assert (item.input_height, item.input_width) == ((384, 128) if "sbs" in item.name else (256, 128))
        assert 0 < item.mAP < item.rank1 < 100 and item.dataset in item.licence
        assert item.source_format == "fastreid" and item.architecture in item.name


def test_download_asks_verifies_converts_and_becomes_the_default(fastreid_checkpoint, capsys):
    with serve(fastreid_checkpoint) as server:
        assert download(server.url) == cli.EXIT_USAGE  # no terminal to ask on, no --yes: nothing fetched
        assert server.requests == [] and "--yes" in capsys.readouterr().err
        assert download(server.url, "--yes") == cli.EXIT_OK
    installed = catalogue.installed_path(NAME)
    assert chosen_reid_model() == installed
    embedder, warnings = load_embedder(ReidConfig())
    assert isinstance(embedder, OnnxEmbedder) and embedder.path == installed and not warnings
    assert embedder.info.dataset == "MSMT17" and embedder.info.metrics["mAP"] == pytest.approx(0.544)
    assert embedder.info.licence == catalogue.entry(NAME).licence and catalogue.entry(NAME).url in embedder.info.weights
    pins = json.loads((models_dir() / "pins.json").read_text())
    assert re.fullmatch(r"[0-9a-f]{64}", pins[NAME])
    out = capsys.readouterr().out
    assert "licence" in out and "research use" in out and "lowest cosine" in out

    assert cli.main(["models", "list"]) == cli.EXIT_OK
    listing = capsys.readouterr().out
    assert f"re-id default:      {installed}" in listing and "MSMT17" in listing


def test_wrong_bytes_after_pinning_leave_the_installed_model_in_use(fastreid_checkpoint, capsys):
    with serve(fastreid_checkpoint) as server:
        assert download(server.url, "--yes") == cli.EXIT_OK
    installed = catalogue.installed_path(NAME)
    before = installed.read_bytes()
    kept = models_dir() / "checkpoints" / "msmt_bot_R50-ibn.pth"
    kept.write_bytes(kept.read_bytes()[:-10] + b"0123456789")  # altered on disk: not trusted, fetched again
    with serve(fastreid_checkpoint, mode="wrong") as server:
        assert download(server.url, "--yes") == cli.EXIT_MODEL
    assert server.requests == [None]
    assert "not the expected file" in capsys.readouterr().err
    assert installed.read_bytes() == before and chosen_reid_model() == installed


def test_a_cut_download_installs_nothing_and_resumes(fastreid_checkpoint, capsys):
    with serve(fastreid_checkpoint, mode="cut", cut_at=len(fastreid_checkpoint) // 3) as server:
        assert download(server.url, "--yes") == cli.EXIT_MODEL
        assert "run the same command again to resume" in capsys.readouterr().err
        assert chosen_reid_model() is None and not catalogue.installed_path(NAME).exists()
        assert download(server.url, "--yes") == cli.EXIT_OK
    assert server.requests[-1] == f"bytes={len(fastreid_checkpoint) // 3}-"
    assert chosen_reid_model() == catalogue.installed_path(NAME)


def test_a_first_download_that_is_no_model_is_neither_kept_nor_pinned(capsys):
    with serve(b"<html>rate limited</html>" * 100) as server:
        assert download(server.url, "--yes") == cli.EXIT_MODEL
    assert "not a readable PyTorch checkpoint" in capsys.readouterr().err
    raw = models_dir() / "checkpoints" / "msmt_bot_R50-ibn.pth"
    assert not raw.exists() and not part_path(raw).exists() and not (models_dir() / "pins.json").exists()
    assert chosen_reid_model() is None


def test_import_converts_a_checkpoint_and_can_keep_the_default(tmp_path, fastreid_checkpoint, capsys):
    source = tmp_path / "market_bot_R50-ibn.pth"
    source.write_bytes(fastreid_checkpoint)
    assert cli.main(["models", "import", str(source), "--no-default"]) == cli.EXIT_OK
    assert chosen_reid_model() is None and (models_dir() / "market_bot_R50-ibn.onnx").is_file()
    assert cli.main(["models", "import", str(source), "--format", "fastreid", "--name", "site-a"]) == cli.EXIT_OK
    assert chosen_reid_model() == models_dir() / "site-a.onnx"
    assert cli.main(["models", "import", str(source), "--format", "torchreid"]) == cli.EXIT_MODEL
    assert "layout of a fastreid checkpoint" in capsys.readouterr().err
