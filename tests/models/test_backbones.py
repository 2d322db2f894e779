import numpy as np
import pytest
import torch
from PIL import Image

from conehier.models.backbones import (
    BACKBONES,
    FEATURE_DIMS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    WeightsUnavailableError,
    build_backbone,
    image_transforms,
    weights_path,
)


@pytest.fixture(autouse=True)
def _empty_hub(monkeypatch, tmp_path):
    """Every test sees an empty torch hub cache (no weights) and is offline (conftest)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    torch.set_num_threads(1)


def test_names():
    assert BACKBONES == ("alexnet", "vgg16", "resnet18", "resnet50", "resnet101", "resnet152")
    assert set(FEATURE_DIMS) == set(BACKBONES)


@pytest.mark.parametrize("name", BACKBONES)
def test_feature_shapes(name):
    # shapes only: on the meta device (no memory, no init cost)
    with torch.device("meta"):
        net, dim = build_backbone(name, weights=None)
        out = net.eval()(torch.empty(2, 3, 224, 224))
    assert dim == FEATURE_DIMS[name] == net.out_features
    assert out.shape == (2, dim)
    assert net.name == name and net.weights == "random"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_resnet18_forward_dtypes_and_seed(dtype):
    torch.manual_seed(3)
    a, _ = build_backbone("resnet18", weights=None)
    torch.manual_seed(3)
    b, _ = build_backbone("resnet18", weights=None)
    x = torch.randn(3, 3, 32, 32, dtype=dtype)
    ya = a.to(dtype).eval()(x)
    yb = b.to(dtype).eval()(x)
    assert ya.shape == (3, 512) and ya.dtype == dtype
    assert torch.isfinite(ya).all()
    assert torch.equal(ya, yb)  # same seed -> same weights -> same features


def test_bad_input_and_name():
    net, _ = build_backbone("resnet18", weights=None)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\).*\(2, 32, 32\)"):
        net(torch.zeros(2, 32, 32))
    with pytest.raises(ValueError, match="unknown backbone 'resnet19'"):
        build_backbone("resnet19")
    with pytest.raises(ValueError, match="no weights 'IMAGENET9K'"):
        build_backbone("resnet18", weights="IMAGENET9K")


def test_missing_imagenet_weights_offline_is_a_clear_error(tmp_path):
    expected = weights_path("resnet18")
    assert str(expected).startswith(str(tmp_path / "torch_home"))
    with pytest.raises(WeightsUnavailableError) as exc:
        build_backbone("resnet18")
    msg = str(exc.value)
    assert str(expected) in msg and "IMAGENET1K_V1" in msg and "--random-init" in msg and "offline" in msg


def test_random_init_only_when_asked():
    with pytest.warns(RuntimeWarning, match="Using random initialisation"):
        net, dim = build_backbone("resnet18", allow_random=True)
    assert dim == 512 and net.weights == "random"


def test_cached_imagenet_weights_are_loaded():
    import torchvision

    torch.manual_seed(0)
    ref = torchvision.models.resnet18(weights=None)
    path = weights_path("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(ref.state_dict(), path)
    net, _ = build_backbone("resnet18")  # found in the hub cache: no download, no error
    assert net.weights == "imagenet:IMAGENET1K_V1"
    x = torch.randn(2, 3, 32, 32)
    ref.fc = torch.nn.Identity()
    assert torch.allclose(net.eval()(x), ref.eval()(x))


def test_state_dict_file(tmp_path):
    import torchvision

    torch.manual_seed(1)
    ref = torchvision.models.resnet18(weights=None)
    p = tmp_path / "mine.pth"
    torch.save(ref.state_dict(), p)
    net, _ = build_backbone("resnet18", weights=str(p))
    assert net.weights == "file:mine.pth"
    assert torch.equal(net.net.conv1.weight, ref.conv1.weight)
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        build_backbone("resnet18", weights=str(tmp_path / "nope.pth"))
    torch.save({"foo": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="do not fit backbone 'resnet18'"):
        build_backbone("resnet18", weights=str(tmp_path / "bad.pth"))


def test_freeze_keeps_batchnorm_in_eval():
    net, _ = build_backbone("resnet18", weights=None)
    net.freeze().train()
    assert not any(p.requires_grad for p in net.parameters())
    assert not net.net.bn1.training
    before = net.net.bn1.running_mean.clone()
    net(torch.randn(4, 3, 32, 32))
    assert torch.equal(before, net.net.bn1.running_mean)


def test_eval_transform_against_hand_computation():
    colour = (200, 100, 50)
    img = Image.new("RGB", (600, 500), colour)
    t = image_transforms(False)
    x = t(img)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    want = (np.array(colour) / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(x.mean((1, 2)).numpy(), want, atol=1e-5)
    np.testing.assert_allclose(x.std((1, 2)).numpy(), 0.0, atol=1e-5)


def test_centre_crop_keeps_the_middle():
    # left third red, middle third green, right third blue: resize 300->..., the centre crop is green
    arr = np.zeros((100, 300, 3), np.uint8)
    arr[:, :100, 0] = 255
    arr[:, 100:200, 1] = 255
    arr[:, 200:, 2] = 255
    x = image_transforms(False, resize=100, crop=50)(Image.fromarray(arr))
    assert x.shape == (3, 50, 50)
    green = (1.0 - IMAGENET_MEAN[1]) / IMAGENET_STD[1]
    assert torch.allclose(x[1], torch.full((50, 50), green), atol=1e-4)


def test_train_transform_is_random_and_seeded():
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8))
    t = image_transforms(True, resize=64, crop=32)
    torch.manual_seed(5)
    a = t(img)
    torch.manual_seed(5)
    b = t(img)
    c = t(img)
    assert a.shape == (3, 32, 32)
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="crop <= resize"):
        image_transforms(True, resize=32, crop=64)
