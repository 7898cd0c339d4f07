"""Backbones and their weights, offline."""

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F

from sosc.errors import ConfigError
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
        with pytest.raises(WeightsError, match="Offline"):
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
