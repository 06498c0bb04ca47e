import json

import pytest
import torch
import torch.nn.functional as F

from fer_engine.errors import FerError
from fer_engine.spec import LABELS
from fer_engine.train.checkpoint import load_checkpoint, save_checkpoint
from fer_engine.train.models import count_macs, count_parameters, create_model, get_family, list_models

ALL_MODELS = ["cnn", "cnn-ensemble", "convnext", "convnextv2", "vit"]


def test_registry_lists_the_five_models():
    assert list_models() == ALL_MODELS
    assert list_models("conv*") == ["convnext", "convnextv2"]


def test_unknown_model_suggests_the_closest():
    with pytest.raises(FerError, match="unknown model 'convnxt'.*Did you mean 'convnext'"):
        get_family("convnxt")


@pytest.mark.parametrize("name", ALL_MODELS)
def test_tiny_model_builds_and_takes_a_training_step(name):
    built = create_model(name, from_config="tiny")
    spec = built.spec
    assert spec.labels == LABELS and spec.model == name
    x = torch.randn(4, spec.channels, *spec.image_size)
    y = torch.tensor([0, 3, 5, 6])
    optimizer = torch.optim.SGD(built.module.parameters(), lr=0.1)
    before = [p.detach().clone() for p in built.module.parameters()]
    loss = F.cross_entropy(built.module(x), y)
    assert built.module(x).shape == (4, 7)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(b, p) for b, p in zip(before, built.module.parameters()))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_checkpoint_roundtrip_gives_the_same_logits(tmp_path, name):
    built = create_model(name, from_config="tiny")
    built.module.eval()
    x = torch.randn(3, built.spec.channels, *built.spec.image_size)
    with torch.no_grad():
        expected = built.module(x)
    folder = save_checkpoint(tmp_path / name, built, {"note": "test"})
    config = json.loads((folder / "config.json").read_text())
    assert config["fer"]["labels"] == list(LABELS) and config["fer"]["model"] == name
    ckpt = load_checkpoint(folder)
    with torch.no_grad():
        torch.testing.assert_close(ckpt.module(x), expected, rtol=0, atol=1e-6)
    assert ckpt.metrics == {"note": "test"}
    assert not (tmp_path / f"{name}.partial").exists()


@pytest.mark.parametrize("name", ["vit", "convnext", "convnextv2"])
def test_hf_models_have_canonical_head_and_three_channel_input(name):
    built = create_model(name, from_config="tiny")
    config = built.module.hf.config
    assert config.id2label == dict(enumerate(LABELS))
    assert built.spec.channels == 3 and len(built.spec.mean) == 3


def test_full_size_configs_match_the_hub_architectures():
    # Parameter counts of the published models with a 7-label head.
    expected = {"vit": 85.8e6, "convnext": 27.8e6, "convnextv2": 27.9e6}
    for name, params in expected.items():
        built = create_model(name, from_config="full")
        assert count_parameters(built.module) == pytest.approx(params, rel=0.01), name
    assert create_model("convnextv2", from_config="full").spec.image_size == (384, 384)
    assert create_model("vit", from_config="full").spec.image_size == (224, 224)


def test_cnn_fits_the_edge_budget():
    built = create_model("cnn")
    assert count_parameters(built.module) <= 3_000_000
    # 0.3 GFLOPs per face even counting a multiply and an add as two operations.
    assert 2 * count_macs(built.module, built.spec) <= 0.3e9


def test_pretrained_local_folder_gets_a_new_seven_label_head(tmp_path):
    import transformers

    config = transformers.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                    image_size=32, patch_size=8, num_labels=1000)
    transformers.ViTForImageClassification(config).save_pretrained(tmp_path / "vit-local")
    (tmp_path / "vit-local" / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.4, 0.4, 0.4], "image_std": [0.2, 0.2, 0.2]}))
    built = create_model("vit", pretrained=str(tmp_path / "vit-local"))
    assert built.module.hf.config.num_labels == 7
    assert built.spec.mean == (0.4, 0.4, 0.4) and built.spec.image_size == (32, 32)
    assert built.module(torch.zeros(1, 3, 32, 32)).shape == (1, 7)


def test_offline_hub_id_explains_what_to_do():
    with pytest.raises(FerError, match="huggingface-cli download google/vit-base-patch16-224"):
        create_model("vit", pretrained="google/vit-base-patch16-224")


@pytest.mark.parametrize("problem", ["missing", "no_config", "corrupt_config", "corrupt_weights", "other_family"])
def test_bad_checkpoint_folders(tmp_path, problem):
    folder = save_checkpoint(tmp_path / "ckpt", create_model("cnn", from_config="tiny"))
    if problem == "missing":
        folder = tmp_path / "elsewhere"
    elif problem == "no_config":
        (folder / "config.json").unlink()
    elif problem == "corrupt_config":
        (folder / "config.json").write_text("{not json")
    elif problem == "corrupt_weights":
        (folder / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(FerError):
        load_checkpoint(folder, expect_model="vit" if problem == "other_family" else None)


def test_cnn_residual_blocks_start_as_identity_unless_the_config_says_otherwise(tmp_path):
    from fer_engine.train.cnn import BasicBlock

    def block_scales(module):
        return [float(b.body[-1].weight.abs().sum()) for b in module.modules() if isinstance(b, BasicBlock)]

    default = create_model("cnn").module
    assert block_scales(default) and all(s == 0 for s in block_scales(default))
    config = tmp_path / "sgd.json"
    config.write_text(json.dumps({"zero_init_residual": False}))
    built = create_model("cnn", from_config=str(config))
    assert built.arch["zero_init_residual"] is False
    assert all(s > 0 for s in block_scales(built.module))
    # a checkpoint saved before the field existed loads with the default
    saved = save_checkpoint(tmp_path / "ckpt", built)
    config = json.loads((saved / "config.json").read_text())
    config["arch"].pop("zero_init_residual")
    (saved / "config.json").write_text(json.dumps(config))
    assert load_checkpoint(saved).arch.get("zero_init_residual", True) is True


def test_antialiased_cnn_blurs_before_striding_and_keeps_the_weights_names():
    from fer_engine.train.cnn import BlurredConv2d, CNNConfig, FerCNN

    plain, blurred = FerCNN(CNNConfig()), FerCNN(CNNConfig(antialias=True))
    assert list(plain.state_dict()) == list(blurred.state_dict())  # the blur is a fixed, unsaved buffer
    strided = [m for m in blurred.modules() if isinstance(m, torch.nn.Conv2d) and m.stride == (2, 2)]
    assert strided and all(isinstance(m, BlurredConv2d) for m in strided)
    assert not any(isinstance(m, BlurredConv2d) for m in plain.modules())
    # A one-pixel checkerboard is what a stride-2 sampler aliases: the blur removes it before sampling.
    conv = BlurredConv2d(1, 1, 1, stride=2, bias=False)
    torch.nn.init.ones_(conv.weight)
    board = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2
    out = conv(board.float().view(1, 1, 8, 8))
    assert torch.allclose(out[..., 1:, 1:], torch.full_like(out[..., 1:, 1:], 0.5))  # inside: the mean, not 0 or 1
    spec = get_family("cnn").spec()
    assert count_macs(blurred, spec) < 1.02 * count_macs(plain, spec)


def test_pretrained_cnn_takes_shape_keeping_changes_from_a_config_file(tmp_path):
    saved = save_checkpoint(tmp_path / "ckpt", create_model("cnn", from_config="tiny"))
    change = tmp_path / "aa.json"
    change.write_text(json.dumps({"antialias": True}))
    built = create_model("cnn", pretrained=str(saved), from_config=str(change))
    original = load_checkpoint(saved)
    assert built.arch["antialias"] is True and original.arch.get("antialias", False) is False
    for key, value in original.module.state_dict().items():
        assert torch.equal(built.module.state_dict()[key], value)
    wider = tmp_path / "wide.json"
    wider.write_text(json.dumps({"widths": [16, 16, 16, 32]}))
    with pytest.raises(FerError, match="changes the shape"):
        create_model("cnn", pretrained=str(saved), from_config=str(wider))
    with pytest.raises(FerError, match="untrained"):
        create_model("cnn", pretrained=str(saved), from_config="tiny")
