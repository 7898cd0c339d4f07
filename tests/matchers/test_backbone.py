"""Backbones and their weights, offline."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F

from sosc.errors import ConfigError
from sosc.matchers import backbone
from sosc.matchers.backbone import PACKAGED_WEIGHTS, Backbone, WeightsError, _packaged_state


class TestPackagedWeights:
    def test_real_imagenet_weights_recognise_a_cat(self):
        skdata = pytest.importorskip("skimage.data")
        state, record = _packaged_state("tf_efficientnet_lite0")
        model = timm.create_model("tf_efficientnet_lite0").eval()
        model.load_state_dict(state)
        img = torch.from_numpy(np.ascontiguousarray(skdata.chelsea())).permute(2, 0, 1).float()[None] / 255
        img = F.interpolate(img, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
        mean, std = torch.tensor(record.mean).view(1, 3, 1, 1), torch.tensor(record.std).view(1, 3, 1, 1)
        with torch.no_grad():
            top = model((img - mean) / std).argmax(-1).item()
        assert 281 <= top <= 285  # ImageNet's domestic cat classes

    def test_backbone_strides_and_channels(self):
        net = Backbone("tf_efficientnet_lite0", pretrained="package", strides=(8, 16, 32))
        feats = net(torch.rand(1, 3, 64, 96))
        assert net.channels == (40, 112, 320)
        assert [tuple(f.shape[-2:]) for f in feats] == [(8, 12), (4, 6), (2, 3)]

    def test_record_has_checksum(self):
        assert len(PACKAGED_WEIGHTS["tf_efficientnet_lite0"].sha256) == 64


class TestErrors:
    def test_no_packaged_weights_for_other_models(self):
        with pytest.raises(WeightsError, match="packaged weights exist for"):
            Backbone("resnet18", pretrained="package")

    def test_missing_local_file(self, tmp_path):
        with pytest.raises(WeightsError, match="does not exist"):
            Backbone("resnet18", pretrained=str(tmp_path / "nope.pth"))

    def test_hub_offline_raises_not_random(self, monkeypatch):
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        with pytest.raises(WeightsError, match="HF_HUB_OFFLINE is set.*pretrained=false"):
            Backbone("resnet18", pretrained=True)

    def test_unknown_stride(self):
        with pytest.raises(ConfigError, match="stride 64"):
            Backbone("resnet18", strides=(8, 64))

    def test_unknown_model(self):
        with pytest.raises(ConfigError, match="unknown timm backbone"):
            Backbone("no_such_net_v9")


class TestLocalFile:
    def test_loads_a_local_weights_file(self, tmp_path):
        ref = timm.create_model("resnet18")
        path = tmp_path / "resnet18.pth"
        torch.save(ref.state_dict(), path)
        net = Backbone("resnet18", pretrained=str(path), strides=(8,))
        assert torch.equal(net.body.conv1.weight, ref.conv1.weight)


class TestFreeze:
    def test_frozen_backbone_stays_in_eval_mode(self):
        net = Backbone("resnet18", strides=(8, 16), freeze=True)
        net.train()
        assert not net.body.training
        assert not any(p.requires_grad for p in net.parameters())


def test_checksum_mismatch_names_file_and_hashes(monkeypatch):
    import dataclasses

    record = PACKAGED_WEIGHTS["tf_efficientnet_lite0"]
    monkeypatch.setitem(PACKAGED_WEIGHTS, "tf_efficientnet_lite0", dataclasses.replace(record, sha256="0" * 64))
    with pytest.raises(WeightsError, match="checksum mismatch") as err:
        _packaged_state("tf_efficientnet_lite0")
    assert "0" * 64 in str(err.value) and record.sha256 in str(err.value)


DINO = "vit_small_patch14_dinov2"


class TestDINOv2:
    """timm's DINOv2 ViTs as backbones: one stride (the patch, 14), any multiple of 14."""

    def test_any_input_that_is_a_multiple_of_the_patch(self):
        """Before: ``Input height (224) doesn't match model (518)``."""
        net = Backbone(DINO, pretrained=False, strides=(14,))
        assert net.strides == (14,) and net.channels == (384,)
        for size in ((224, 224), (126, 168), (56, 70)):
            (feats,) = net(torch.rand(1, 3, *size))
            assert feats.shape == (1, 384, size[0] // 14, size[1] // 14)

    def test_the_last_block_is_used(self):
        net = Backbone(DINO, pretrained=False, strides=(14,))
        assert net.index == [len(net.body.feature_info.reduction()) - 1]

    def test_registers_and_tags(self):
        net = Backbone("vit_small_patch14_reg4_dinov2.lvd142m", pretrained=False, strides=(14,))
        assert net(torch.rand(1, 3, 28, 42))[0].shape == (1, 384, 2, 3)

    def test_a_cnn_stride_is_refused_with_the_patch(self):
        with pytest.raises(ConfigError, match=r"strides \[14\]; stride 8 is not one of them \(a ViT: .* strides=\(14,\)\)"):
            Backbone(DINO, pretrained=False, strides=(8, 16))

    @pytest.mark.parametrize("layout", ["timm", "dinov2"])
    def test_a_local_weights_file(self, tmp_path, layout):
        """timm's own state dict, or DINOv2's release layout (with its ``mask_token``), which timm converts."""
        ref = timm.create_model(DINO, pretrained=False)
        state = dict(ref.state_dict())
        if layout == "dinov2":
            state["mask_token"] = torch.zeros(1, 384)
        path = tmp_path / "dinov2_vits14_pretrain.pth"
        torch.save(state, path)
        net = Backbone(DINO, pretrained=str(path), strides=(14,))
        assert torch.equal(net.body.model.blocks[3].attn.qkv.weight, ref.blocks[3].attn.qkv.weight)
        assert torch.equal(net.normalize.mean.flatten(), torch.tensor((0.485, 0.456, 0.406)))

    def test_hub_offline_raises_not_random(self, monkeypatch):
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        with pytest.raises(WeightsError, match="HF_HUB_OFFLINE is set.*pretrained=false"):
            Backbone("vit_small_patch14_dinov2.lvd142m", pretrained=True, strides=(14,))

    @pytest.mark.parametrize("name", ["vit_base_patch14_dinov2.lvd142m", "vit_large_patch14_dinov2.lvd142m",
                                      "vit_giant_patch14_dinov2.lvd142m", "vit_large_patch14_reg4_dinov2.lvd142m"])
    def test_the_larger_ones_are_known_and_sized_alike(self, name):
        from sosc.matchers.backbone import takes_dynamic_img_size

        assert timm.is_model(name) and takes_dynamic_img_size(name)
        assert timm.models.get_pretrained_cfg(name).mean == (0.485, 0.456, 0.406)
        assert "patch14" in name


class TestHub:
    """pretrained=True when timm's hub cannot be reached: seconds, one line, or the cache."""

    @pytest.fixture
    def online_mode(self, monkeypatch):
        """huggingface_hub as without HF_HUB_OFFLINE (the test suite sets it), the hub's address a
        closed loopback port: what a machine without network sees, at once."""
        from huggingface_hub import constants

        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(backbone, "hub_source", lambda name: "http://127.0.0.1:9")
        return constants

    def test_an_unreachable_hub_fails_in_seconds_in_one_line(self, online_mode):
        start = time.perf_counter()
        with pytest.raises(WeightsError) as err:
            Backbone("resnet18", pretrained=True)
        message = str(err.value)
        assert "\n" not in message and "127.0.0.1:9 cannot be reached" in message
        assert "--model.matcher.init_args.pretrained /path/to/weights.pth" in message and "pretrained=false" in message
        assert time.perf_counter() - start < 10

    def test_an_unreachable_hub_still_gives_cached_weights(self, online_mode, monkeypatch, tmp_path):
        safetensors = pytest.importorskip("safetensors.torch")
        repo = tmp_path / ("models--" + timm.models.get_pretrained_cfg("resnet18").hf_hub_id.replace("/", "--"))
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text("0" * 40)
        (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
        reference = timm.create_model("resnet18", pretrained=False)
        safetensors.save_file(reference.state_dict(), str(repo / "snapshots" / ("0" * 40) / "model.safetensors"))
        monkeypatch.setattr(online_mode, "HF_HUB_CACHE", str(tmp_path))
        net = Backbone("resnet18", pretrained=True, strides=(8,))
        assert torch.equal(net.body.conv1.weight, reference.conv1.weight)
        assert online_mode.HF_HUB_OFFLINE is False  # offline only while the weights were read

    def test_the_hub_path_is_bounded_without_hf_hub_offline(self, tmp_path):
        """The real hub, HF_HUB_OFFLINE unset: on a machine without network (this project's and
        CI's) it fails within the probe's bound instead of retrying for about 50 s."""
        from sosc.network import unreachable

        source = backbone.hub_source("resnet18")
        if source is None or unreachable(source) is None:
            pytest.skip(f"{source} answers: this machine has a network")
        env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
        env["HF_HUB_CACHE"] = str(tmp_path)
        code = "from sosc.matchers.backbone import Backbone\nBackbone('resnet18', pretrained=True)"
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        seconds = time.perf_counter() - start
        assert done.returncode != 0 and "WeightsError: pretrained=True" in done.stderr
        assert "Retrying" not in done.stderr, done.stderr[-2000:]
        assert seconds < 30 and "hub cannot be used" in done.stderr
