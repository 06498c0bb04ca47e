"""The model registry: one entry per model family, each able to create, save and load its models.

``cnn`` is ours (train/cnn.py). ``vit``, ``convnext`` and ``convnextv2`` are Hugging Face models through
transformers' Auto classes with a new 7-label head; gray faces are replicated to 3 channels and resized
to the model's input size by the preprocessing spec (``fer_engine.spec.ModelSpec``).
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from fer_engine.errors import FerError, FieldError
from fer_engine.spec import LABELS, ModelSpec, did_you_mean

from .cnn import CNNConfig, FerCNN
from .ensemble import FULL_MEMBERS, EnsembleModule, compact_weight, member_file
from .ensemble import NAME as ENSEMBLE
from .ensemble import PROG as ENSEMBLE_PROG

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Mean and spread of FER2013 Training pixels (measured: 0.514 and 0.307).
FER_MEAN = (0.514,)
FER_STD = (0.307,)


@dataclass(frozen=True)
class TrainDefaults:
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    optimizer: str  # "sgd" | "adamw"
    warmup_epochs: float
    label_smoothing: float


@dataclass
class BuiltModel:
    module: nn.Module  # forward(pixel_values [N, C, H, W]) -> logits [N, len(labels)]
    spec: ModelSpec
    arch: dict  # what ``load`` needs besides the weights


# The repository's checkpoints/ folder, found from the package, not from the working folder (a clone or an
# editable install has it; a wheel does not, and then a default checkpoint is simply not there).
REPO_CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"


class ModelFamily(ABC):
    """One kind of model and every fact the other parts need about it, so none of them tests its name."""

    name: str
    description: str
    defaults: TrainDefaults
    exporter: str = "optimum"  # how export/ makes its ONNX file: "torch" (torch.onnx.export) or "optimum"
    int8_mode: str = "static"  # what --int8-mode auto picks (static QDQ or dynamic), measured per family
    calibration_faces: int = 64  # faces fer-bench calibrates its static int8 file with
    symbolic_shape_inference: bool = True  # onnxruntime's quant_pre_process can run it on this graph
    default_checkpoint: Path | None = None  # the shipped trained checkpoint, if there is one
    assembled_by: str | None = None  # the command that makes this model from trained ones; None: fer-train trains it

    # The published FER2013 fine-tune that export and evaluation use when no model is named (None: ours).
    finetuned_id: str | None = None

    @abstractmethod
    def create(self, pretrained: str | None = None, from_config: str | None = None, new_head: bool = False) -> BuiltModel:
        """A new model: from pretrained weights (hub id or folder), or untrained from a config
        (``full`` size, ``tiny`` for tests, or a JSON file of config values). An emotion model's head is
        kept, its labels mapped to ours, unless ``new_head``."""

    @abstractmethod
    def save_weights(self, built: BuiltModel, folder: Path, config: dict) -> None:
        """Write the weights (and ``config.json``, which holds ``config``) into ``folder``."""

    @abstractmethod
    def load(self, folder: Path, spec: ModelSpec, arch: dict) -> nn.Module:
        """The module saved in ``folder``."""


_REGISTRY: dict[str, ModelFamily] = {}


def register(family: ModelFamily) -> ModelFamily:
    _REGISTRY[family.name] = family
    return family


def list_models(pattern: str = "*") -> list[str]:
    import fnmatch

    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_family(name: str) -> ModelFamily:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise FerError(f"unknown model '{name}'.{did_you_mean(name, _REGISTRY)} "
                       f"Available: {', '.join(list_models())}") from None


def create_model(name: str, pretrained: str | None = None, from_config: str | None = None,
                 new_head: bool = False) -> BuiltModel:
    return get_family(name).create(pretrained=pretrained, from_config=from_config, new_head=new_head)


def cpu_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """Weights as contiguous CPU tensors, as safetensors wants them (training may use channels_last)."""
    return {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_macs(module: nn.Module, spec: ModelSpec) -> int:
    """Multiply-accumulates for one face (FLOPs as 2 x MACs)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = module.training
    module.eval()
    param = next(module.parameters())
    x = torch.zeros(1, spec.channels, *spec.image_size, device=param.device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(x)
    module.train(was_training)
    return counter.get_total_flops() // 2


def _read_overrides(from_config: str) -> dict:
    path = Path(from_config)
    if not path.is_file():
        raise FieldError("from_config", f"takes 'full', 'tiny' or a JSON file of config values; '{from_config}' is none of these")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise FerError(f"{path} is not valid JSON: {exc}") from exc


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick look before transformers' own retries, which take a minute to give up offline."""
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


class CNNFamily(ModelFamily):
    name = "cnn"
    description = "ours: compact ResNet for 48x48 gray faces, made for the edge (2.8 M parameters)"
    exporter = "torch"
    calibration_faces = 256
    default_checkpoint = REPO_CHECKPOINTS / "cnn"
    defaults = TrainDefaults(epochs=80, batch_size=128, lr=1e-3, weight_decay=0.05, optimizer="adamw",
                             warmup_epochs=2, label_smoothing=0.1)
    tiny = CNNConfig(widths=(8, 16, 16, 32), blocks=(1, 1, 1, 1), stem=((8, 1), (8, 2)))

    def spec(self) -> ModelSpec:
        return ModelSpec(model=self.name, image_size=(48, 48), channels=1, mean=FER_MEAN, std=FER_STD)

    def create(self, pretrained=None, from_config=None, new_head=False) -> BuiltModel:
        if pretrained:
            from .checkpoint import load_checkpoint  # fine-tune one of our own checkpoints

            ckpt = load_checkpoint(pretrained, expect_model=self.name)
            if from_config is None:
                return BuiltModel(ckpt.module, ckpt.spec, ckpt.arch)
            return self._changed(ckpt, from_config)
        if from_config in (None, "full"):
            config = CNNConfig()
        elif from_config == "tiny":
            config = self.tiny
        else:
            config = CNNConfig.from_dict(CNNConfig().to_dict() | _read_overrides(from_config))
        return BuiltModel(FerCNN(config), self.spec(), config.to_dict())

    def _changed(self, ckpt, from_config: str) -> BuiltModel:
        """The checkpoint's weights in its architecture with a JSON file's values changed: fields that keep the
        weights' shapes (antialias, dropout), e.g. to fine-tune a trained model into its anti-aliased form."""
        if from_config in ("full", "tiny"):
            raise FieldError("from_config", f"'{from_config}' builds an untrained model; with --pretrained pass a "
                                            "JSON file of the architecture values to change (e.g. {\"antialias\": true})")
        config = CNNConfig.from_dict(dict(ckpt.arch) | _read_overrides(from_config))
        module = FerCNN(config)
        try:
            module.load_state_dict(ckpt.module.state_dict())
        except RuntimeError as exc:
            raise FerError(f"{from_config} changes the shape of {ckpt.folder}'s weights, so they cannot start it: with "
                           "--pretrained change only fields such as antialias or dropout") from exc
        return BuiltModel(module, ckpt.spec, config.to_dict())

    def save_weights(self, built, folder, config) -> None:
        from safetensors.torch import save_file

        (folder / "config.json").write_text(json.dumps(config, indent=2))
        save_file(cpu_state_dict(built.module), str(folder / "model.safetensors"))

    def load(self, folder, spec, arch) -> nn.Module:
        from safetensors.torch import load_file

        module = FerCNN(CNNConfig.from_dict(arch))
        module.load_state_dict(load_file(str(folder / "model.safetensors")))
        return module


def hub_download_hint(source: str, model: str, exc: Exception | None = None) -> str:
    folder = f"{model}-{source.rstrip('/').split('/')[-1]}"
    why = f" ({exc})" if exc else ""
    return (f"cannot load '{source}' from the Hugging Face hub (offline, or no such model){why}. On a machine with "
            f"internet access run `huggingface-cli download {source} --local-dir {folder}`, copy that folder here "
            f"and pass --pretrained ./{folder}")


class HFClassifier(nn.Module):
    """A transformers image classifier behind the contract ``forward(pixel_values) -> logits``."""

    def __init__(self, hf_model: nn.Module):
        super().__init__()
        self.hf = hf_model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.hf(pixel_values=pixel_values).logits


class HFFamily(ModelFamily):
    defaults = TrainDefaults(epochs=10, batch_size=32, lr=5e-5, weight_decay=0.05, optimizer="adamw",
                             warmup_epochs=1, label_smoothing=0.1)

    def __init__(self, name, hub_id, config_class, description, full, tiny, mean, std, finetuned_id=None,
                 int8_mode="static", symbolic_shape_inference=True):
        self.name, self.hub_id, self.config_class, self.description = name, hub_id, config_class, description
        self.finetuned_id = finetuned_id
        # ViT's MatMuls gain most from dynamic int8 (benchmarks/RESULTS.md); ConvNeXt-V2's GRN breaks
        # symbolic shape inference in quant_pre_process (a TypeError), and ONNX's own is enough there.
        self.int8_mode, self.symbolic_shape_inference = int8_mode, symbolic_shape_inference
        self.full, self.tiny, self.mean, self.std = full, tiny, mean, std

    def _label_kwargs(self) -> dict:
        return {"num_labels": len(LABELS), "id2label": dict(enumerate(LABELS)),
                "label2id": {n: i for i, n in enumerate(LABELS)}}

    def _spec(self, image_size: int, mean=None, std=None) -> ModelSpec:
        return ModelSpec(model=self.name, image_size=(image_size, image_size), channels=3,
                         mean=tuple(mean or self.mean), std=tuple(std or self.std))

    def create(self, pretrained=None, from_config=None, new_head=False) -> BuiltModel:
        import transformers

        if from_config is None:
            return self._from_pretrained(pretrained or self.hub_id, new_head)
        if pretrained:
            raise FerError("pretrained weights and an untrained config (from_config) exclude each other: pass one of them")
        values = {"full": self.full, "tiny": self.tiny}.get(from_config)
        if values is None:
            values = self.full | _read_overrides(from_config)
        config = getattr(transformers, self.config_class)(**values, **self._label_kwargs())
        hf = transformers.AutoModelForImageClassification.from_config(config)
        return BuiltModel(HFClassifier(hf), self._spec(config.image_size), {})

    def _from_pretrained(self, source: str, new_head: bool = False) -> BuiltModel:
        import transformers

        from .hf_import import plan_head, reorder_head

        local = Path(source).expanduser()
        if not local.is_dir() and (source.startswith((".", "/", "~")) or os.sep in source.strip("/").split("/", 1)[-1]):
            raise FerError(f"pretrained folder not found: {source}")
        where = str(local) if local.is_dir() else source
        config = self._load_hub(transformers.AutoConfig.from_pretrained, source, local)
        plan = plan_head(config.id2label, where, new_head)
        label_kwargs = {} if plan.keep_head else dict(ignore_mismatched_sizes=True, **self._label_kwargs())
        hf = self._load_hub(transformers.AutoModelForImageClassification.from_pretrained, source, local, **label_kwargs)
        if plan.keep_head:
            reorder_head(hf, plan.order)
        mean, std = self._processor_values(source, local)
        arch = {"head": plan.reason, "head_imported": plan.keep_head}
        return BuiltModel(HFClassifier(hf), self._spec(hf.config.image_size, mean, std), arch)

    def _load_hub(self, load, source: str, local: Path, **kwargs):
        """``load`` from a local folder, the user's Hugging Face cache, or the hub; one clear error if none."""
        try:
            if local.is_dir():
                return load(str(local), **kwargs)
            try:  # the user's Hugging Face cache first: no network needed
                return load(source, local_files_only=True, **kwargs)
            except OSError:
                if not _hub_reachable():
                    raise OSError("the Hugging Face hub cannot be reached") from None
                return load(source, **kwargs)
        except (OSError, ValueError) as exc:
            if local.is_dir():
                raise FerError(f"{local} is not a transformers model folder ({exc})") from exc
            raise FerError(hub_download_hint(source, self.name, exc)) from exc

    @staticmethod
    def _processor_values(source: str, local: Path) -> tuple[list | None, list | None]:
        """The model's own normalisation (``preprocessor_config.json``), if it ships one."""
        processor_file = local / "preprocessor_config.json"
        if not local.is_dir():
            from transformers.utils import cached_file

            try:
                found = cached_file(source, "preprocessor_config.json", _raise_exceptions_for_missing_entries=False,
                                    local_files_only=True)
                if found is None and _hub_reachable():  # the model came from the hub: its processor is there too
                    found = cached_file(source, "preprocessor_config.json", _raise_exceptions_for_missing_entries=False)
            except OSError:
                found = None
            processor_file = Path(found) if found else local / "-"
        if not processor_file.is_file():
            return None, None
        processor = json.loads(processor_file.read_text())
        return processor.get("image_mean"), processor.get("image_std")

    def save_weights(self, built, folder, config) -> None:
        hf = built.module.hf
        hf.config.fer = config["fer"]  # transformers keeps unknown attributes in config.json
        hf.config.fer_arch = config["arch"]
        hf.save_pretrained(str(folder), safe_serialization=True)

    def load(self, folder, spec, arch) -> nn.Module:
        import transformers

        return HFClassifier(transformers.AutoModelForImageClassification.from_pretrained(str(folder)))


class EnsembleFamily(ModelFamily):
    name = ENSEMBLE
    description = "ours, the accurate choice: trained cnn networks with their probabilities averaged in one graph"
    exporter = "torch"
    calibration_faces = 256
    default_checkpoint = REPO_CHECKPOINTS / ENSEMBLE
    assembled_by = f"{ENSEMBLE_PROG} --member DIR --member DIR --out DIR"
    defaults = CNNFamily.defaults  # never used to train: fer-train refuses this model (``create``)

    def create(self, pretrained=None, from_config=None, new_head=False) -> BuiltModel:
        if pretrained:
            from .checkpoint import load_checkpoint

            ckpt = load_checkpoint(pretrained, expect_model=self.name)
            return BuiltModel(ckpt.module, ckpt.spec, ckpt.arch)
        if from_config is None:
            raise FerError(f"'{self.name}' is assembled from trained cnn checkpoints, not trained: {self.assembled_by}")
        if from_config == "full":
            configs = list(FULL_MEMBERS)
        elif from_config == "tiny":
            configs = [CNNFamily.tiny, CNNFamily.tiny]
        else:
            overrides = _read_overrides(from_config)
            if not isinstance(overrides.get("members"), list) or not overrides["members"]:
                raise FieldError("from_config", f"{from_config} needs a 'members' list of cnn config values")
            configs = [CNNConfig.from_dict(CNNConfig().to_dict() | member) for member in overrides["members"]]
        return self.built([FerCNN(config) for config in configs], [config.to_dict() for config in configs])

    def built(self, members: list[nn.Module], archs: list[dict]) -> BuiltModel:
        return BuiltModel(EnsembleModule(members), replace(CNNFamily().spec(), model=self.name), {"members": archs})

    def save_weights(self, built, folder, config) -> None:
        from safetensors.torch import save_file

        (folder / "config.json").write_text(json.dumps(config, indent=2))
        # One file per member, as a cnn checkpoint stores it: the bytes of a member that was an fp16 copy come out
        # identical to that copy's file.
        for i, member in enumerate(built.module.members):
            weights = {k: compact_weight(v) for k, v in cpu_state_dict(member).items()}
            save_file(weights, str(folder / member_file(i)))

    def load(self, folder, spec, arch) -> nn.Module:
        from safetensors.torch import load_file

        archs = arch.get("members")
        if not archs:
            raise FerError(f"{folder / 'config.json'} lists no members: it is not a {self.name} checkpoint")
        members = []
        for i, member_arch in enumerate(archs):
            member = FerCNN(CNNConfig.from_dict(member_arch))
            member.load_state_dict({k: v.float() if v.is_floating_point() else v
                                    for k, v in load_file(str(folder / member_file(i))).items()})
            members.append(member)
        return EnsembleModule(members)


register(CNNFamily())
register(EnsembleFamily())
register(HFFamily(
    "vit", "google/vit-base-patch16-224", "ViTConfig", "ViT-B/16 (86 M parameters), 224x224 input",
    full={}, tiny=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       image_size=32, patch_size=8),
    mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), finetuned_id="Aaryan333/vit-base-finetuned-fer2013",
    int8_mode="dynamic"))
register(HFFamily(
    "convnext", "facebook/convnext-tiny-224", "ConvNextConfig", "ConvNeXt-T (28 M parameters), 224x224 input",
    full={}, tiny=dict(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], image_size=32),
    mean=IMAGENET_MEAN, std=IMAGENET_STD, finetuned_id="Aaryan333/convnext-tiny-finetuned-fer2013"))
register(HFFamily(
    "convnextv2", "facebook/convnextv2-tiny-22k-384", "ConvNextV2Config",
    "ConvNeXt-V2-T (28 M parameters), 384x384 input",
    full=dict(image_size=384), tiny=dict(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], image_size=32),
    mean=IMAGENET_MEAN, std=IMAGENET_STD, finetuned_id="Aaryan333/convnextv2-tiny-384-finetuned-fer2013",
    symbolic_shape_inference=False))
