import struct

import numpy as np
import pytest
import torch

from aedissect import data

OPTIONS = {
    "test_fraction": 0.2,
    "split_seed": 0,
    "root": "unused",
    "download": False,
    "factors": {"n_samples": 600, "n_factors": 3, "dim": 10, "map_hidden": 16, "noise_std": 0.05, "seed": 4},
}


def test_digits_are_scaled_and_split_stratified():
    d = data.build("digits", OPTIONS)
    assert d["x_train"].shape[1] == 64 and d["x_train"].shape[0] + d["x_test"].shape[0] == 1797
    for x in (d["x_train"], d["x_test"]):
        assert x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1
    train_share = np.bincount(d["y_train"].numpy()) / len(d["y_train"])
    test_share = np.bincount(d["y_test"].numpy()) / len(d["y_test"])
    assert np.abs(train_share - test_share).max() < 0.01
    assert data.checksum(d) == data.checksum(data.build("digits", OPTIONS))


def test_factors_are_a_seeded_smooth_map_of_the_stored_factors():
    d = data.build("factors", OPTIONS)
    again = data.build("factors", OPTIONS)
    assert data.checksum(d) == data.checksum(again)
    spec = OPTIONS["factors"]
    assert d["factors_train"].shape == (480, 3) and d["x_train"].shape == (480, 10)
    assert d["factors_train"].abs().max() <= 1
    clean = data.factors_map(3, 10, 16, spec["seed"])(d["factors_train"].double().numpy())
    residual = d["x_train"].double().numpy() - clean
    # the residual is the noise (clipping to [0, 1] only shrinks it)
    assert residual.std() == pytest.approx(spec["noise_std"], rel=0.15)
    other = data.build("factors", OPTIONS | {"factors": spec | {"seed": 5}})
    assert data.checksum(other) != data.checksum(d)


def write_idx(folder, prefix, images, labels):
    folder.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    (folder / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, h, w) + images.tobytes())
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels.tobytes())


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST"), ("kmnist", "KMNIST")])
def test_torchvision_sets_load_from_idx_files(tmp_path, name, folder):
    rng = np.random.default_rng(0)
    images = {p: rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8) for p, n in (("train", 20), ("t10k", 7))}
    labels = {p: rng.integers(0, 10, size=len(images[p]), dtype=np.uint8) for p in images}
    for prefix in images:
        write_idx(tmp_path / folder / "raw", prefix, images[prefix], labels[prefix])
    d = data.build(name, OPTIONS | {"root": str(tmp_path)})
    assert d["x_train"].shape == (20, 784) and d["x_test"].shape == (7, 784)
    np.testing.assert_allclose(d["x_train"].numpy(), images["train"].reshape(20, -1) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(d["y_test"].numpy(), labels["t10k"])


def test_missing_torchvision_files_name_the_path_and_the_option(tmp_path):
    with pytest.raises(data.DataError) as err:
        data.build("mnist", OPTIONS | {"root": str(tmp_path)})
    assert str(tmp_path / "MNIST" / "raw") in str(err.value)
    assert "data.download" in str(err.value) and "data.root" in str(err.value)


def test_corrupt_torchvision_file_is_named(tmp_path):
    images = np.zeros((5, 28, 28), dtype=np.uint8)
    for prefix in ("train", "t10k"):
        write_idx(tmp_path / "MNIST" / "raw", prefix, images, np.zeros(5, dtype=np.uint8))
    raw = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    raw.write_bytes(raw.read_bytes()[:500])
    with pytest.raises(data.DataError, match="MNIST"):
        data.build("mnist", OPTIONS | {"root": str(tmp_path)})


def test_prepared_files_round_trip_and_corruption_is_named(tmp_path):
    path = tmp_path / "digits.pt"
    info = data.prepare("digits", OPTIONS, path)
    assert info["sha256"] == data.checksum(data.load(path))
    assert info["image_shape"] == [8, 8] and info["has_labels"]
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(data.DataError, match=f"{path}.*corrupt"):
        data.load(path)
    with pytest.raises(data.DataError, match="missing"):
        data.load(tmp_path / "nothing.pt")


def test_max_train_samples_keeps_the_test_split():
    d = data.build("digits", OPTIONS | {"max_train_samples": 100})
    assert d["x_train"].shape[0] == 100 and d["y_train"].shape[0] == 100 and d["x_test"].shape[0] == 360
