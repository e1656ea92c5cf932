"""Ecosystem checkpoints: recognised from their keys, rebuilt exactly, converted with parity, refused when wrong.

The checkpoints here are random weights in the key layouts the projects save (names cited from their
sources in ``trainer/zoo.py``); the OSNet rebuild is also checked against a real trained model: the
weights of ``../shared/models/osnet_x0_25_msmt17.onnx`` (a torchreid/BoxMOT export) moved into our
network give the same embeddings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from reid_desktop.core.errors import ModelError
from reid_desktop.core.vision.embedding import OnnxEmbedder
from tests.conftest import shared_path
from trainer import zoo
from trainer.model_import import MIN_PARITY_COSINE, import_checkpoint

# Keys as the projects name them (FastReID v0.1.1 resnet.py / batch_norm.py IBN / non_local.py / bnneck_head.py;
# torchreid osnet.py, osnet_ain.py, resnet.py): our networks must produce exactly these.
KEYS = {
    "bot-r50-ibn": ["backbone.layer1.0.bn1.IN.weight", "backbone.layer3.5.bn1.BN.running_var",
                    "backbone.layer4.0.bn1.running_mean", "heads.bnneck.weight"],
    "sbs-r50": ["backbone.NL_2.1.W.1.running_var", "backbone.NL_3.2.theta.bias", "heads.pool_layer.p"],
    "osnet_x0_25": ["conv1.conv.weight", "conv2.0.conv2a.conv1.weight", "conv2.0.conv2d.3.bn.running_mean",
                    "conv2.0.gate.fc1.bias", "conv2.0.downsample.conv.weight", "conv2.2.0.conv.weight",
                    "conv5.conv.weight", "fc.1.running_var"],
    "osnet_ain_x1_0": ["conv2.0.conv2.3.layers.3.conv2.weight", "conv2.0.IN.weight", "pool2.0.conv.weight",
                       "conv3.0.conv3.bn.weight", "conv4.1.conv3.bn.weight"],
    "resnet50": ["layer4.2.bn3.running_var", "layer1.0.downsample.0.weight"],
}


def fastreid_network(arch: str) -> nn.Module:
    sbs = arch.startswith("sbs")
    return zoo.FastReidNet(ibn=arch.endswith("-ibn"), non_local_inter=1 if sbs else None, gem=sbs)


def randomised(model: nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """The model's state with random weights and statistics (a default BN would hide wiring mistakes)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in model.state_dict().items():
        if value.dtype.is_floating_point:
            value = torch.rand(value.shape, generator=generator) * 0.2 + (0.9 if "running_var" in key else -0.1)
        state[key] = value
    return state


def test_our_networks_use_the_projects_parameter_names():
    networks = {"bot-r50-ibn": fastreid_network("bot-r50-ibn"), "sbs-r50": fastreid_network("sbs-r50"),
                "osnet_x0_25": zoo.OSNet("x0_25"), "osnet_ain_x1_0": zoo.OSNet("x1_0", ain=True),
                "resnet50": zoo.TorchreidResNet(fc512=False)}
    for arch, keys in KEYS.items():
        names = set(networks[arch].state_dict())
        assert set(keys) <= names, (arch, set(keys) - names)
    assert not any("layer4" in k and ".IN." in k for k in networks["bot-r50-ibn"].state_dict())  # IBN-a: layers 1-3


def test_osnet_rebuild_reproduces_a_real_trained_model():
    """Every named tensor of the real export is ours; with its (BN-folded) weights our OSNet embeds the same."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    path = shared_path("models/osnet_x0_25_msmt17.onnx")
    proto = onnx.load(str(path))
    weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in proto.graph.initializer}
    model = zoo.OSNet("x0_25").eval()
    state = model.state_dict()
    named = {k for k in weights if not k.startswith(("onnx::", "/"))}
    assert named <= set(state), named - set(state)

    # The exporter folded each BN into the conv before it: give our convs the folded weights and bias, and
    # make every BatchNorm2d an identity. Convs pair up in the order they first run.
    convs: list[nn.Conv2d] = []
    hooks = [m.register_forward_hook(lambda mod, *_: convs.append(mod) if mod not in convs else None)
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(torch.zeros(1, 3, 256, 128))
    for hook in hooks:
        hook.remove()
    seen, nodes = set(), []
    for node in proto.graph.node:
        if node.op_type == "Conv" and node.input[1] not in seen:
            seen.add(node.input[1])
            nodes.append(node)
    assert len(nodes) == len(convs)
    with torch.no_grad():
        for conv, node in zip(convs, nodes, strict=True):
            conv.weight.copy_(weights[node.input[1]])
            if len(node.input) > 2:
                conv.bias = nn.Parameter(weights[node.input[2]].clone())
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.fill_(1.0)
                module.bias.zero_()
                module.running_mean.zero_()
                module.running_var.fill_(1.0 - module.eps)
        for key in ("fc.0.weight", "fc.0.bias", "fc.1.weight", "fc.1.bias", "fc.1.running_mean", "fc.1.running_var"):
            state[key].copy_(weights[key])
        x = np.random.default_rng(1).standard_normal((4, 3, 256, 128)).astype(np.float32)
        ours = model(torch.from_numpy(x)).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    theirs = session.run(None, {session.get_inputs()[0].name: x})[0]
    theirs /= np.linalg.norm(theirs, axis=1, keepdims=True)
    assert (ours * theirs).sum(axis=1).min() > 0.9999


@pytest.mark.parametrize(("arch", "layout"), [
    ("bot-r50-ibn", "fastreid-v0.1.1"), ("sbs-r50", "fastreid-head"), ("resnet50", "torchreid-checkpoint"),
    ("osnet_x0_25", "boxmot-pt"),
])
def test_a_checkpoint_converts_to_a_model_the_app_runs(tmp_path, arch, layout):
    network = {"bot-r50-ibn": lambda: fastreid_network(arch), "sbs-r50": lambda: fastreid_network(arch),
               "resnet50": lambda: zoo.TorchreidResNet(fc512=False), "osnet_x0_25": lambda: zoo.OSNet("x0_25")}[arch]()
    state = randomised(network)
    if layout == "fastreid-v0.1.1":  # Checkpointer.save: {"model": ..., "iteration": ...}, training extras inside
        state |= {"heads.classifier.weight": torch.rand(751, 2048), "pixel_mean": torch.rand(1, 3, 1, 1),
                  "pixel_std": torch.rand(1, 3, 1, 1)}
        saved: object = {"model": state, "iteration": 12000}
    elif layout == "fastreid-head":  # after the refactor: heads.bottleneck.0.*, heads.weight
        state = {k.replace("heads.bnneck.", "heads.bottleneck.0."): v for k, v in state.items()}
        saved = {"model": state | {"heads.weight": torch.rand(751, 2048)}}
    elif layout == "torchreid-checkpoint":  # save_checkpoint of a DataParallel model
        saved = {"state_dict": {"module." + k: v for k, v in state.items()} | {"module.classifier.weight":
                                                                                torch.rand(751, 2048)},
                 "epoch": 60, "rank1": 0.879}
    else:  # BoxMOT's .pt: torchreid's state dict renamed
        saved = state | {"classifier.weight": torch.rand(1041, 512), "classifier.bias": torch.rand(1041)}
    source = tmp_path / ("weights.pt" if layout == "boxmot-pt" else "model.pth")
    torch.save(saved, source)

    imported = import_checkpoint(source, tmp_path / "out.onnx")
    assert imported.architecture == arch
    assert imported.parity_cosine >= MIN_PARITY_COSINE
    embedder = OnnxEmbedder(imported.path)
    expected_input = (384, 128) if arch.startswith("sbs") else (256, 128)
    assert (embedder.info.input_height, embedder.info.input_width) == expected_input
    assert embedder.dim == (512 if arch.startswith("osnet") else 2048)
    assert embedder.info.architecture.endswith(arch) and source.name in embedder.info.weights
    crops = [np.random.default_rng(i).integers(0, 255, (160, 64, 3), np.uint8) for i in range(3)]
    vectors = embedder.embed(crops)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    # our rebuilt network, fed as the app feeds it, gives what the app's ONNX gives
    with torch.no_grad():
        reference = zoo.build_network(zoo.read_checkpoint(source))
        batch = torch.from_numpy(embedder.preprocess(crops))
        assert np.allclose(reference(batch).numpy(), vectors, atol=1e-3)


def test_a_checkpoint_of_another_network_is_refused_with_one_line(tmp_path):
    state = randomised(zoo.TorchreidResNet(fc512=False))
    del state["layer3.0.conv2.weight"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(ModelError, match="does not fit resnet50") as caught:
        import_checkpoint(tmp_path / "broken.pth", tmp_path / "out.onnx")
    assert "\n" not in str(caught.value) and not (tmp_path / "out.onnx").exists()

    torch.save({"model": {"encoder.weight": torch.rand(3)}}, tmp_path / "other.pth")
    with pytest.raises(ModelError, match="not a FastReID, torchreid or BoxMOT re-id checkpoint"):
        import_checkpoint(tmp_path / "other.pth", tmp_path / "out.onnx")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not a readable PyTorch checkpoint"):
        import_checkpoint(tmp_path / "junk.pth", tmp_path / "out.onnx")
    with pytest.raises(ModelError, match="layout of a torchreid checkpoint, not fastreid"):
        import_checkpoint(tmp_path / "broken.pth", tmp_path / "out.onnx", "fastreid")


def test_pickled_code_is_never_run(tmp_path):
    class Payload:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "ran",))

    torch.save({"model": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(ModelError, match="not a readable PyTorch checkpoint"):
        import_checkpoint(tmp_path / "evil.pth", tmp_path / "out.onnx")
    assert not (tmp_path / "ran").exists()


def test_every_known_osnet_and_resnet_layout_is_recognised():
    for arch, network in [("osnet_x1_0", zoo.OSNet("x1_0")), ("osnet_ibn_x1_0", zoo.OSNet("x1_0", ibn=True)),
                          ("osnet_ain_x1_0", zoo.OSNet("x1_0", ain=True)), ("osnet_x0_5", zoo.OSNet("x0_5")),
                          ("resnet50_fc512", zoo.TorchreidResNet(fc512=True)),
                          ("bot-r50", fastreid_network("bot-r50")), ("sbs-r50-ibn", fastreid_network("sbs-r50-ibn"))]:
        detected = zoo.recognise(network.state_dict())
        assert detected is not None and detected.architecture == arch
        rebuilt = zoo.build_network(detected)
        assert set(rebuilt.state_dict()) == set(network.state_dict())


def test_training_can_start_from_a_re_id_trained_checkpoint(tmp_path):
    """FastReID BoT(R50) and torchreid resnet50 start the trainer's backbone; other networks are refused."""
    from trainer.model import WeightsUnavailable, build_model

    bot = randomised(fastreid_network("bot-r50"))
    torch.save({"model": bot}, tmp_path / "market_bot_R50.pth")
    model, source = build_model(10, str(tmp_path / "market_bot_R50.pth"))
    assert source == "fastreid bot-r50 (market_bot_R50.pth)"
    assert torch.equal(model.backbone.layer3[2].bn2.running_mean, bot["backbone.layer3.2.bn2.running_mean"])

    torch.save({"state_dict": randomised(zoo.TorchreidResNet(fc512=False))}, tmp_path / "resnet50_msmt17.pt")
    assert build_model(10, str(tmp_path / "resnet50_msmt17.pt"))[1] == "torchreid resnet50 (resnet50_msmt17.pt)"

    torch.save(zoo.OSNet("x0_25").state_dict(), tmp_path / "osnet.pt")
    with pytest.raises(WeightsUnavailable, match="holds a torchreid osnet_x0_25 network"):
        build_model(10, str(tmp_path / "osnet.pt"))


def test_fine_tuning_from_fastreid_ibn_and_non_local_networks_trains_and_reloads(tmp_path):
    """IBN-a layers, non-local blocks and GeM come with the start; a trained run rebuilds to the same network."""
    from trainer.config import TrainConfig
    from trainer.model import build_model
    from trainer.train import load_trained

    sbs = randomised(fastreid_network("sbs-r50-ibn"))
    torch.save({"model": sbs}, tmp_path / "msmt_sbs_R50-ibn.pth")
    model, source = build_model(10, str(tmp_path / "msmt_sbs_R50-ibn.pth"))
    assert source == "fastreid sbs-r50-ibn (msmt_sbs_R50-ibn.pth)"
    assert torch.equal(model.backbone.pool.p, sbs["heads.pool_layer.p"])
    assert torch.equal(model.backbone.NL_3[1].W[1].running_var, sbs["backbone.NL_3.1.W.1.running_var"])
    model.train()
    logits, features = model(torch.rand(4, 3, 64, 32))
    logits.sum().backward()  # gradients reach the IBN layers
    assert model.backbone.layer2[0].bn1.IN.weight.grad is not None and features.shape == (4, 2048)

    saved = {"model": model.state_dict(), "config": TrainConfig().to_dict(), "num_classes": 10}
    torch.save(saved, tmp_path / "run.pt")
    reloaded, _ = load_trained(tmp_path / "run.pt")
    x = torch.rand(2, 3, 64, 32)
    with torch.no_grad():
        assert torch.allclose(reloaded(x), model.eval()(x), atol=1e-5)


def test_the_match_threshold_is_calibrated_on_the_demo_clips_people(tmp_path):
    """People seen in one frame are different people: the threshold is set where almost none reach another."""
    from trainer.model_import import calibrate_on_demo, demo_people

    people = demo_people()
    assert sum(len(crops) for crops in people) >= 60 and all(len(crops) >= 2 for crops in people)
    osnet = OnnxEmbedder(shared_path("models/osnet_x0_25_msmt17.onnx"), providers="cpu")
    threshold = calibrate_on_demo(osnet)
    assert threshold is not None and 0.3 < threshold < 0.95
    best_wrong = []
    for crops in people:
        vectors = osnet.embed(list(crops))
        scores = vectors @ vectors.T
        np.fill_diagonal(scores, -1.0)
        best_wrong.extend(scores.max(axis=1))
    assert np.mean(np.asarray(best_wrong) >= threshold) <= 0.02  # at most 1 % (+ one person's rounding)

    torch.save(randomised(zoo.OSNet("x0_25")), tmp_path / "osnet.pt")
    imported = import_checkpoint(tmp_path / "osnet.pt", tmp_path / "osnet.onnx")
    assert imported.info.match_threshold == pytest.approx(calibrate_on_demo(OnnxEmbedder(imported.path)), abs=1e-6)
    assert OnnxEmbedder(imported.path).match_threshold == pytest.approx(imported.info.match_threshold)
