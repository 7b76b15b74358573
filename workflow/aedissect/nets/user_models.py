"""A user's own model class and checkpoint: found by name, built, loaded, each failure one line naming the culprit.

A class is named as ``module:Class`` (importable, e.g. ``mypackage.models:AE``) or ``path/to/file.py:Class``;
its keyword arguments come as ``key=value`` strings read as YAML. A checkpoint is a state dict
(``torch.save(model.state_dict(), path)``), or the payload of a pipeline ``model.pt``; a pickled whole model is
refused: unpickling runs arbitrary code, which ``torch.load(weights_only=True)`` exists to prevent.
"""

from __future__ import annotations

import importlib
import importlib.util
import pickle
import sys
from pathlib import Path

import torch
import yaml
from torch import nn


class UserModelError(ValueError):
    """A class, its arguments or a checkpoint that cannot be used as given; the message names it."""


def import_class(spec: str) -> type:
    """The class named by ``module:Class`` or ``path/to/file.py:Class``."""
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name:
        raise UserModelError(f"--model {spec!r}: expected module:Class or path/to/file.py:Class")
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise UserModelError(f"--model {spec!r}: no such file {path}")
        module_name = f"aedissect_user_{path.stem}"
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[module_name] = module  # dataclasses and pickling look their module up here
        try:
            loader_spec.loader.exec_module(module)
        except Exception as err:
            raise UserModelError(f"--model {spec!r}: {path} fails on import: {type(err).__name__}: {err}") from None
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as err:
            raise UserModelError(f"--model {spec!r}: cannot import {where!r} ({err})") from None
    cls = getattr(module, name, None)
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        found = "nothing" if cls is None else type(cls).__name__
        raise UserModelError(f"--model {spec!r}: {name!r} in {where} is {found}, not an nn.Module class")
    return cls


def keyword_arguments(pairs: list[str]) -> dict:
    """``key=value`` strings, each value read as YAML (``64``, ``[32, 16]``, ``relu``)."""
    kwargs = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise UserModelError(f"--kwarg {pair!r}: expected name=value, e.g. z_dim=8")
        kwargs[key] = yaml.safe_load(value)
    return kwargs


def build(spec: str, kwargs: dict) -> nn.Module:
    """An instance of the named class built with ``kwargs``."""
    cls = import_class(spec)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise UserModelError(f"--model {spec!r} with {kwargs}: {err}") from None


def read_checkpoint(path: str | Path) -> dict:
    """The dict a checkpoint file holds (a state dict or a pipeline payload), with only tensors and plain data
    unpickled."""
    path = Path(path)
    if path.is_dir():
        inside = path / "model.pt"
        hint = f": did you mean {inside}?" if inside.is_file() else ": give the checkpoint file inside it"
        raise UserModelError(f"{path} is a folder, not a checkpoint{hint}")
    if not path.is_file():
        raise UserModelError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserModelError(
            f"{path} holds a pickled object, not tensors (a whole model saved with torch.save(model)): unpickling "
            "runs arbitrary code; save model.state_dict() instead and name its class with --model module:Class"
        ) from None
    except (RuntimeError, EOFError) as err:
        raise UserModelError(f"{path} is not a PyTorch checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(payload, dict):
        raise UserModelError(f"{path} holds a {type(payload).__name__}, not a state dict or a pipeline model.pt")
    return payload


def is_pipeline_payload(payload: dict) -> bool:
    return "config" in payload and "state" in payload


def load_state(model: nn.Module, state: dict, path: str | Path, spec: str) -> nn.Module:
    """``model`` with the weights of ``state``, every key and shape checked first."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        raise UserModelError(
            f"{path} does not fit {spec}: missing keys {missing[:5]}, unexpected keys {unexpected[:5]} "
            "(the class's keyword arguments must match those the checkpoint was trained with)"
        )
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise UserModelError(
                f"{path} does not fit {spec}: {key} is {tuple(state[key].shape)} in the file, "
                f"{tuple(tensor.shape)} in the class (check its keyword arguments)"
            )
    model.load_state_dict(state)
    return model
