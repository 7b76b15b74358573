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
    whole = raw.read_bytes()
    raw.write_bytes(whole[:500])
    with pytest.raises(data.DataError, match=rf"cannot use {raw}: its header says 5 items, 3936 bytes, but it has 500"):
        data.build("mnist", OPTIONS | {"root": str(tmp_path)})
    raw.write_bytes(struct.pack(">I", 1234) + whole[4:])
    with pytest.raises(data.DataError, match=rf"cannot use {raw}: its magic number 1234"):
        data.build("mnist", OPTIONS | {"root": str(tmp_path)})


def write_cifar10(root, monkeypatch, n_train=4, n_test=3):
    """CIFAR-10's on-disk format (pickled dicts of uint8 rows in CHW order); torchvision's MD5 list is pointed at
    these files, as it would be at the release's."""
    import hashlib
    import pickle

    from torchvision.datasets import CIFAR10

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = {f"data_batch_{i}": n_train for i in range(1, 6)} | {"test_batch": n_test}
    arrays = {}
    for name, n in batches.items():
        arrays[name] = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).tolist()
        (folder / name).write_bytes(pickle.dumps({"data": arrays[name], "labels": labels}))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"class{i}" for i in range(10)]}))

    def md5(name):
        return hashlib.md5((folder / name).read_bytes()).hexdigest()

    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{i}", md5(f"data_batch_{i}")] for i in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5("test_batch")]])
    monkeypatch.setattr(CIFAR10, "meta", CIFAR10.meta | {"md5": md5("batches.meta")})
    return folder, arrays


def test_cifar10_loads_in_chw_order_and_a_changed_file_is_named(tmp_path, monkeypatch):
    folder, arrays = write_cifar10(tmp_path, monkeypatch)
    d = data.build("cifar10", OPTIONS | {"root": str(tmp_path)})
    assert d["x_train"].shape == (20, 3072) and d["x_test"].shape == (3, 3072)
    # the stored rows are already channel-major (1024 red, 1024 green, 1024 blue), which ToTensor would give too
    np.testing.assert_allclose(d["x_train"][:4].numpy(), arrays["data_batch_1"] / 255.0, rtol=1e-6)
    np.testing.assert_allclose(d["x_test"].numpy(), arrays["test_batch"] / 255.0, rtol=1e-6)
    batch = folder / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:-10])
    with pytest.raises(data.DataError, match=rf"cannot use {batch}: its MD5 is not that of the CIFAR-10 release"):
        data.build("cifar10", OPTIONS | {"root": str(tmp_path)})
    batch.unlink()
    with pytest.raises(data.DataError, match=rf"{batch} not found .*data.root.*data.download"):
        data.build("cifar10", OPTIONS | {"root": str(tmp_path)})


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
