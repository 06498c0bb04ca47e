"""Importing Hugging Face emotion models: their head is kept and its rows follow the label names."""

import json

import numpy as np
import pytest
import torch

from fer_engine.errors import FerError
from fer_engine.spec import LABELS, canonical_label
from fer_engine.train.hf_import import plan_head
from fer_engine.train.models import create_model

# How published fine-tunes spell and order their labels (image-folder training gives alphabetical order).
FOREIGN = ["Happiness", "anger", "Surprised", "neutral", "Fearful", "sadness", "DISGUSTED"]


def save_tiny_vit(folder, labels):
    import transformers

    config = transformers.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                    image_size=32, patch_size=8, num_labels=len(labels),
                                    id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    torch.manual_seed(0)
    model = transformers.ViTForImageClassification(config).eval()
    with torch.no_grad():  # a head that is far from uniform, so a wrong permutation cannot pass
        model.classifier.weight.normal_(0, 1.0)
        model.classifier.bias.copy_(torch.linspace(-2, 2, len(labels)))
    model.save_pretrained(str(folder))
    return model


def probs_by_name(logits, labels):
    probs = torch.softmax(logits, -1).numpy()
    return {name: probs[:, i] for i, name in enumerate(labels)}


def test_canonical_label_spellings():
    assert [canonical_label(n) for n in FOREIGN] == ["happy", "angry", "surprise", "neutral", "fear", "sad", "disgust"]
    assert canonical_label("contempt") is None


def test_emotion_head_is_imported_with_its_rows_in_canonical_order(tmp_path):
    original = save_tiny_vit(tmp_path / "hub-model", FOREIGN)
    built = create_model("vit", pretrained=str(tmp_path / "hub-model"))
    assert built.spec.labels == LABELS
    assert built.module.hf.config.id2label == dict(enumerate(LABELS))
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        before = probs_by_name(original(pixel_values=x).logits, [canonical_label(n) for n in FOREIGN])
        after = probs_by_name(built.module.eval()(x), LABELS)
    for name in LABELS:
        np.testing.assert_allclose(after[name], before[name], rtol=1e-5, atol=1e-6)
    assert (np.stack([after[n] for n in LABELS], 1).argmax(1) != np.stack([before[n] for n in LABELS], 1).argmax(1)).sum() == 0


def test_imported_model_exports_to_onnx_that_agrees_by_name(tmp_path):
    pytest.importorskip("onnxruntime")
    from fer_engine.runtime.onnx_model import OnnxClassifier
    from fer_engine.train.checkpoint import load_checkpoint, save_checkpoint

    original = save_tiny_vit(tmp_path / "hub-model", FOREIGN)
    built = create_model("vit", pretrained=str(tmp_path / "hub-model"))
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "ckpt", built))
    assert ckpt.spec.labels == LABELS
    from fer_engine.export.onnx_export import export_fp32

    onnx_file = export_fp32(ckpt, tmp_path / "model.onnx", 17)
    faces = np.random.default_rng(0).integers(0, 255, size=(6, 32, 32), dtype=np.uint8)  # at the input size: no resize to differ
    onnx_probs = OnnxClassifier(onnx_file).predict_probs(faces)
    from fer_engine.train.evaluate import predict_probs

    torch_probs = predict_probs(ckpt.module, ckpt.spec, faces)
    np.testing.assert_allclose(onnx_probs, torch_probs, atol=1e-4)
    # and by name against the untouched original, on the same preprocessed input
    from fer_engine.train.preprocess import faces_to_tensor, to_pixel_values

    with torch.no_grad():
        logits = original(pixel_values=to_pixel_values(faces_to_tensor(faces), ckpt.spec)).logits
    before = probs_by_name(logits, [canonical_label(n) for n in FOREIGN])
    for i, name in enumerate(LABELS):
        np.testing.assert_allclose(onnx_probs[:, i], before[name], atol=1e-4)


@pytest.mark.parametrize("labels, message", [
    (FOREIGN + ["contempt"], "labels that are not one of the seven FER2013 emotions: contempt"),
    (["happy", "sad", "angry", "neutral"], "emotions it lacks: disgust, fear, surprise"),
    (["happy", "happiness", "angry", "neutral", "sad", "fear", "surprise"], "emotions named twice: happy"),
    ([f"LABEL_{i}" for i in range(7)], "without label names"),
])
def test_unmappable_emotion_heads_fail_clearly_unless_new_head(tmp_path, labels, message):
    save_tiny_vit(tmp_path / "m", labels)
    with pytest.raises(FerError, match=message.replace("(", r"\(")) as err:
        create_model("vit", pretrained=str(tmp_path / "m"))
    assert "--new-head" in str(err.value)
    built = create_model("vit", pretrained=str(tmp_path / "m"), new_head=True)
    assert built.spec.labels == LABELS and built.module.hf.config.num_labels == 7


def test_generic_backbone_gets_a_new_head_without_asking(tmp_path):
    save_tiny_vit(tmp_path / "imagenet", ["tench", "goldfish", "great white shark"] + [f"class {i}" for i in range(20)])
    built = create_model("vit", pretrained=str(tmp_path / "imagenet"))
    assert built.module.hf.config.id2label == dict(enumerate(LABELS))
    assert built.module.hf.classifier.out_features == 7


def test_plan_head_maps_rows():
    plan = plan_head(dict(enumerate(FOREIGN)), "x")
    assert plan.keep_head and [FOREIGN[i] for i in plan.order] == ["anger", "DISGUSTED", "Fearful", "Happiness",
                                                                     "sadness", "Surprised", "neutral"]


def test_families_name_their_published_fine_tune():
    from fer_engine.train.models import get_family

    assert get_family("vit").finetuned_id == "Aaryan333/vit-base-finetuned-fer2013"
    assert get_family("convnext").finetuned_id == "Aaryan333/convnext-tiny-finetuned-fer2013"
    assert get_family("convnextv2").finetuned_id == "Aaryan333/convnextv2-tiny-384-finetuned-fer2013"
    assert get_family("cnn").finetuned_id is None


def test_evaluating_a_pretrained_emotion_model_uses_canonical_columns(tmp_path):
    from fer_engine.train.classifiers import load_pretrained

    original = save_tiny_vit(tmp_path / "hub-model", FOREIGN)
    classifier = load_pretrained("vit", str(tmp_path / "hub-model"), device="cpu")
    faces = np.random.default_rng(1).integers(0, 255, size=(5, 32, 32), dtype=np.uint8)
    probs = classifier.predict_probs(faces)
    from fer_engine.train.preprocess import faces_to_tensor, to_pixel_values

    with torch.no_grad():
        logits = original(pixel_values=to_pixel_values(faces_to_tensor(faces), classifier.spec)).logits
    before = probs_by_name(logits, [canonical_label(n) for n in FOREIGN])
    for i, name in enumerate(LABELS):
        np.testing.assert_allclose(probs[:, i], before[name], atol=1e-5)


def test_no_fine_tune_to_default_to_for_cnn():
    from fer_engine.train.classifiers import load_pretrained

    with pytest.raises(FerError, match="no published fine-tune"):
        load_pretrained("cnn", None)


def test_offline_hub_id_says_how_to_download(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FerError, match="huggingface-cli download Aaryan333/vit-base-finetuned-fer2013"):
        create_model("vit", pretrained="Aaryan333/vit-base-finetuned-fer2013")


def test_fer_export_vit_int8_without_flags_uses_the_published_fine_tune(tmp_path, capsys):
    """Offline (as in CI) the command the seed's users are told to run says in one line how to get the model."""
    from fer_engine.export import cli_export

    assert cli_export.main(["--model", "vit", "--int8", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "Aaryan333/vit-base-finetuned-fer2013" in err and "huggingface-cli download" in err and "--pretrained" in err
    assert not (tmp_path / "out").exists()


def test_fer_export_of_an_imported_emotion_model_is_trained_and_canonical(tmp_path, capsys):
    from fer_engine.export import cli_export
    from fer_engine.runtime.onnx_model import OnnxClassifier

    save_tiny_vit(tmp_path / "hub-model", FOREIGN)
    out = tmp_path / "out"
    assert cli_export.main(["--model", "vit", "--pretrained", str(tmp_path / "hub-model"), "--out", str(out),
                            "--no-verify"]) == 0
    report = json.loads((out / "export_report.json").read_text())
    assert "untrained" not in json.dumps(report).lower()
    onnx_file = next(out.glob("*.onnx"))
    assert OnnxClassifier(onnx_file).spec.labels == LABELS


def test_fer_eval_evaluates_a_hub_emotion_model_by_name(tmp_path, capsys):
    from conftest import write_csv

    from fer_engine.train import cli_eval

    save_tiny_vit(tmp_path / "hub-model", FOREIGN)
    csv = write_csv(tmp_path / "fer.csv", n=35)
    assert cli_eval.main(["--model", "vit", "--pretrained", str(tmp_path / "hub-model"), "--data", str(csv),
                          "--split", "PublicTest", "--json", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["count"] == 7 and set(report["per_class"]) == set(LABELS)
    capsys.readouterr()
    assert cli_eval.main(["--model", "vit", "--data", str(csv)]) == 2  # offline: the fine-tune cannot be fetched
    assert "huggingface-cli download Aaryan333/vit-base-finetuned-fer2013" in capsys.readouterr().err
    assert cli_eval.main(["--pretrained", "x", "--data", str(csv)]) == 2
    assert "--pretrained needs --model" in capsys.readouterr().err
