"""Any PyTorch autoencoder whose encoder and decoder are chains of modules, seen through the cut interface.

The library cuts, probes and differentiates a model through one small interface (``nets.cuts.CutChain``), which
``GridAutoencoder`` implements for the pipeline's own nets and ``ChainAutoencoder`` for a model the user trained
elsewhere.

A layer of a chain is a parametrised module with the parameter-free modules that follow it (activations,
reshapes) folded in; parameter-free modules at the head of a chain fold into its first layer. The bottleneck is
the encoder's output, which must be a (n, z) matrix (a VAE's encoder gives mu and log var side by side, (n, 2z)).
A user may keep fewer cuts by naming the parametrised modules after which to cut (``cuts``, module names as
``model.named_modules()`` gives them, as torch_cka names layers); the code and the output are always cuts.

Inputs and outputs are rows, as everywhere in the library (data sets, losses, controls, probes): a model that
takes images gets ``input_shape`` (C, H, W), and its first layer reshapes the rows to it, its last flattens the
reconstruction; the cuts between keep the model's own shapes (the probes flatten them, ``probes.narrowed``).

The chains are run module by module, which is what ``nn.Sequential`` does; ``wrap`` checks once, with a forward
hook on the encoder's last module, that the model's own ``forward`` computes the same code and output, and refuses
a model whose ``forward`` does something else (an AE; a VAE's forward samples, so only its code is compared).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from aedissect.nets.cuts import CutChain
from aedissect.plans import frozen_layer_set

KINDS = ("ae", "vae")


class ModelError(ValueError):
    """A model that cannot be cut as asked: the message names the module or the shape and what is expected."""


def _units(chain: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    """The modules of a chain in order with their qualified names: nested ``nn.Sequential`` and ``nn.ModuleList``
    opened up, any other module one unit."""
    if not isinstance(chain, nn.Sequential | nn.ModuleList):
        return [(prefix, chain)]
    units = []
    for name, child in chain.named_children():
        units += _units(child, f"{prefix}.{name}")
    return units


def _has_parameters(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def _layers(units: list[tuple[str, nn.Module]], chain: str) -> list[tuple[str, list[nn.Module]]]:
    """(name of its parametrised module, its modules) per layer of one chain."""
    layers: list[tuple[str, list[nn.Module]]] = []
    head: list[nn.Module] = []
    for name, module in units:
        if _has_parameters(module):
            layers.append((name, head + [module]))
            head = []
        elif layers:
            layers[-1][1].append(module)
        else:
            head.append(module)
    if not layers:
        raise ModelError(f"{chain} has no module with parameters: nothing to cut")
    return layers


def _merged(layers: list[tuple[str, list[nn.Module]]], keep: set[str]) -> list[tuple[str, list[nn.Module]]]:
    """The layers with a cut only after the kept names (the last layer always): the others fold forward."""
    merged: list[tuple[str, list[nn.Module]]] = []
    pending: list[nn.Module] = []
    for i, (name, modules) in enumerate(layers):
        pending += modules
        if name in keep or i == len(layers) - 1:
            merged.append((name, pending))
            pending = []
    return merged


def _resolve_chain(model: nn.Module, chain: str | Sequence[str], side: str) -> list[tuple[str, nn.Module]]:
    modules = dict(model.named_modules())
    if isinstance(chain, str):
        if chain not in modules or chain == "":
            raise ModelError(
                f"{type(model).__name__} has no module {chain!r} for its {side}: name its {side} chain "
                f"({side}='attribute' or a list of module names in order)"
            )
        return _units(modules[chain], chain)
    missing = [name for name in chain if name not in modules]
    if missing:
        raise ModelError(f"{type(model).__name__} has no module {missing[0]!r} (named in the {side} chain)")
    return [unit for name in chain for unit in _units(modules[name], name)]


class ChainAutoencoder(CutChain):
    """A user's autoencoder, its encoder and decoder chains cut after every layer (module docstring)."""

    def __init__(
        self,
        model: nn.Module,
        encoder: str | Sequence[str] = "encoder",
        decoder: str | Sequence[str] = "decoder",
        kind: str = "ae",
        cuts: Sequence[str] | None = None,
        input_shape: Sequence[int] | None = None,
    ):
        super().__init__()
        if kind not in KINDS:
            raise ModelError(f"kind must be one of {KINDS}, not {kind!r}")
        self.kind = kind
        enc = _layers(_resolve_chain(model, encoder, "encoder"), f"the encoder chain {encoder!r}")
        dec = _layers(_resolve_chain(model, decoder, "decoder"), f"the decoder chain {decoder!r}")
        if cuts is not None:
            names = [name for name, _ in enc + dec]
            unknown = [name for name in cuts if name not in names]
            if unknown:
                raise ModelError(f"cut {unknown[0]!r} is not a parametrised module of the chains; choose from {names}")
            enc, dec = _merged(enc, set(cuts)), _merged(dec, set(cuts))
        self.layer_names = [name for name, _ in enc + dec]
        # the model's modules are registered once, as the stages: one state dict without duplicate keys
        self.input_shape = tuple(input_shape) if input_shape is not None and len(input_shape) > 1 else None
        # a model that takes images gives them back: flattened to rows after its last module (no parameters: the
        # state dict is the model's)
        tail = [nn.Flatten()] if self.input_shape is not None else []
        stages = [modules for _, modules in enc + dec]
        self.stages = nn.ModuleList(nn.Sequential(*m) for m in [*stages[:-1], stages[-1] + tail])
        self.bottleneck_layer = len(enc) - 1
        self.bottleneck_cut = len(enc)
        self.latent_dim: int | None = None  # set by ``wrap`` from the code's width

    @property
    def n_layers(self) -> int:
        return len(self.stages)

    def layer_module(self, i: int) -> nn.Sequential:
        return self.stages[i]

    def posterior_stats(self, x: torch.Tensor) -> torch.Tensor:
        """(mu, log var) of q(z|x) side by side on the last axis; only for the VAE."""
        if self.kind != "vae":
            raise ModelError("posterior: only a VAE (kind='vae') has one")
        return self.stages[self.bottleneck_layer](self.forward_to(x, self.bottleneck_layer))

    def frozen_parameters(self, spec: str) -> list[str]:
        """Names of the parameters a freeze spec holds fixed (``plans.frozen_layer_set`` over the chains' layers)."""
        layers = frozen_layer_set(spec, self.n_layers, self.bottleneck_cut)
        return [name for name, _ in self.named_parameters() if int(name.split(".")[1]) in layers]


def wrap(
    model: nn.Module,
    x: torch.Tensor,
    *,
    encoder: str | Sequence[str] = "encoder",
    decoder: str | Sequence[str] = "decoder",
    kind: str = "ae",
    cuts: Sequence[str] | None = None,
) -> ChainAutoencoder:
    """``model`` as a ``ChainAutoencoder``, checked on the first two samples of ``x`` (inputs in the model's own
    shape, which becomes its ``input_shape``): the model takes them, the code is a matrix, and the chains compute
    what ``model(x)`` does. Puts the model in eval mode (dropout off, batch norm on its running statistics), as
    every probe must see it. The wrapped model takes and gives rows: ``x.flatten(1)``."""
    wrapped = ChainAutoencoder(model, encoder, decoder, kind, cuts, input_shape=x.shape[1:]).eval()
    sample = x[:2]
    rows = sample.flatten(1)
    name = type(model).__name__
    code_module = wrapped.stages[wrapped.bottleneck_layer][-1]
    try:
        with torch.no_grad():
            stats = wrapped.forward_to(rows, wrapped.bottleneck_cut)  # a VAE's (mu, log var): latent_dim unset
    except Exception as err:
        raise ModelError(
            f"{name}'s encoder chain {encoder!r}, run module by module, rejects inputs of shape "
            f"{tuple(sample.shape)[1:]}: {err} (does forward reshape the input before the encoder?)"
        ) from None
    if stats.dim() != 2:
        raise ModelError(
            f"{name}: the encoder's output (after {wrapped.layer_names[wrapped.bottleneck_layer]}) has shape "
            f"{tuple(stats.shape)[1:]} per sample; the code must be a vector (n, z): end the encoder in a dense layer"
        )
    if kind == "vae" and stats.shape[1] % 2:
        raise ModelError(f"{name}: a VAE's encoder gives mu and log var side by side, (n, 2z); its width is odd")
    wrapped.latent_dim = stats.shape[1] // 2 if kind == "vae" else stats.shape[1]
    seen = {}
    hook = code_module.register_forward_hook(lambda _m, _i, out: seen.setdefault("code", out))
    try:
        with torch.no_grad():
            expected = model(sample)
    except Exception as err:
        raise ModelError(f"{name} rejects inputs of shape {tuple(sample.shape)[1:]} (per sample): {err}") from None
    finally:
        hook.remove()
    if "code" not in seen or not torch.equal(seen["code"], stats):
        raise ModelError(
            f"{name}.forward does not compute the encoder chain's output as {encoder!r} runs it module by module: "
            "name the chains (encoder=..., decoder=...) as forward uses them"
        )
    if kind == "ae":
        with torch.no_grad():
            chained = wrapped(rows)
        if (
            not isinstance(expected, torch.Tensor)
            or expected.shape != sample.shape
            or not torch.equal(expected.flatten(1), chained)
        ):
            raise ModelError(
                f"{name}.forward(x) is not decoder(encoder(x)) of its chains {encoder!r} and {decoder!r}: "
                "a VAE is wrapped with kind='vae'; any other step of forward must be a module of a chain"
            )
    return wrapped
