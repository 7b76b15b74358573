"""aedissect: is the encoder really the part that does the encoding? (docs/api.md)

``profile``, ``dissect`` and ``load_model`` are imported on first use, so that importing the package (the workflow does,
to read its config) needs neither torch nor pandas."""

LAZY = {"profile": "aedissect.nets.api", "dissect": "aedissect.nets.dissect", "load_model": "aedissect.nets.models"}


def __getattr__(name: str):
    if name in LAZY:
        import importlib

        return getattr(importlib.import_module(LAZY[name]), name)
    raise AttributeError(f"module 'aedissect' has no attribute {name!r}")
