"""The grid's autoencoders, dense or convolutional, as one ordered list of layers that can be cut anywhere (the cut
interface: ``nets.cuts``).

Layer i is a Linear (or a convolution) and its activation. For the VAE the bottleneck layer emits (mu, log var);
the deterministic path takes mu, training samples z from it (``posterior`` and ``decode``).

A freeze variant whose spec trains a code map (``+code``, the frozen encoder's mirror of the frozen decoder's
trainable output bias) has one more module, ``code_map``: an affine map z -> A z + c on the code (on mu for the
VAE), part of the bottleneck layer's output, started at A = I, c = 0, where it computes exactly the function of the
model without it. Normal runs do not have it (``build_model``).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from aedissect.architectures import conv_parts, cut_shapes, flat_width, is_conv, layer_kinds
from aedissect.config import Run
from aedissect.nets.cuts import CutChain
from aedissect.plans import frozen_layer_set, parse_spec

ACTIVATION_MODULES = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "linear": nn.Identity}


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``F.linear``, and for an ensemble's stacked weights (members first: weight (M, out, in), bias (M, out)) each
    member's map of its own rows x (M, n, in) or of shared ones (n, in). One batched product per layer for all
    members: forward and backward of 8 digits AEs in 1.2 ms a step instead of vmap's 2.9 (``nets.ensemble``)."""
    if weight.dim() == 2:
        return F.linear(x, weight, bias)
    if x.dim() == 2:
        x = x.expand(weight.shape[0], *x.shape)
    return torch.baddbmm(bias.unsqueeze(-2), x, weight.transpose(-1, -2))


class Linear(nn.Linear):
    """``nn.Linear`` (the same parameters, init draws and state dict) that also runs an ensemble's stacked
    weights (``linear``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


class CodeMap(nn.Module):
    """A trainable affine map on the code, z -> weight z + bias, started at the identity (no random draw)."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.eye(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return linear(z, self.weight, self.bias)


class GridAutoencoder(CutChain):
    """The grid's autoencoder: dense layers, and convolutions where the architecture has them
    (``aedissect.architectures``). Layer i is its Linear (or Conv2d, ConvTranspose2d) and its activation, then the
    reshape the next layer needs (Flatten after a convolution before a dense layer or the output, Unflatten after a
    dense layer before a deconvolution). Inputs and outputs are rows; a net whose first layer is a convolution
    reshapes them to ``input_shape`` (C, H, W) first."""

    def __init__(
        self,
        in_dim: int,
        encoder: list,
        bottleneck: int,
        decoder: list,
        activation: str = "relu",
        kind: str = "ae",
        code_map: bool = False,
        input_shape: tuple[int, ...] | None = None,
    ):
        super().__init__()
        if kind not in ("ae", "vae"):
            raise ValueError(f"kind must be 'ae' or 'vae', not {kind!r}")
        if activation not in ACTIVATION_MODULES:
            raise ValueError(f"activation must be one of {sorted(ACTIVATION_MODULES)}, not {activation!r}")
        self.kind = kind
        self.latent_dim = bottleneck
        self.bottleneck_layer = len(encoder)
        self.bottleneck_cut = len(encoder) + 1
        shape = tuple(input_shape) if input_shape is not None else (in_dim,)
        self.cut_shapes = cut_shapes(encoder, bottleneck, decoder, shape, "architecture")
        kinds = layer_kinds(encoder, decoder)
        n_layers = len(kinds)
        layers = []
        for i, spec in enumerate(kinds):
            before, after = self.cut_shapes[i], self.cut_shapes[i + 1]
            # the code and the output stay linear: the likelihood, not the net, squashes the output
            act = ACTIVATION_MODULES["linear" if i in (self.bottleneck_layer, n_layers - 1) else activation]()
            if spec is not None and is_conv(spec):
                op, _, kernel, stride, padding = conv_parts(spec)
                conv = nn.Conv2d if op == "conv" else nn.ConvTranspose2d
                modules = [conv(before[0], after[0], kernel, stride, padding), act]
                if i == n_layers - 1 or not isinstance(kinds[i + 1], dict):
                    modules.append(nn.Flatten())  # a dense layer, or the output's rows, come next
            else:
                width = after[0] * (2 if kind == "vae" and i == self.bottleneck_layer else 1)
                modules = [Linear(flat_width(before), width if len(after) == 1 else flat_width(after)), act]
                if len(after) == 3:
                    modules.append(nn.Unflatten(1, after))
            layers.append(nn.Sequential(*modules))
        self.layers = nn.ModuleList(layers)
        self.input_shape = shape if kinds[0] is not None and is_conv(kinds[0]) else None
        n_enc, n_dec = len(encoder), len(decoder)
        self.layer_names = (
            [f"enc{i + 1}" for i in range(n_enc)] + ["bottleneck"] + [f"dec{i + 1}" for i in range(n_dec)] + ["output"]
        )
        # created after the layers, and drawing nothing, so the layers' seeded init is that of a model without it
        self.code_map = CodeMap(bottleneck) if code_map else None

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def layer_module(self, i: int) -> nn.Sequential:
        """Layer i's modules: its Linear (or convolution), its activation, the reshape after them."""
        return self.layers[i]

    def read_code(self, stats: torch.Tensor) -> torch.Tensor:
        """The code (a VAE's mu), through the code map where the model has one."""
        h = super().read_code(stats)
        return h if self.code_map is None else self.code_map(h)

    def posterior_stats(self, x: torch.Tensor) -> torch.Tensor:
        """(mu, log var) of q(z|x) side by side on the last axis; only for the VAE. A code map maps mu."""
        stats = self.layers[self.bottleneck_layer](self.forward_to(x, self.bottleneck_layer))
        if self.code_map is None:
            return stats
        mu, logvar = stats.chunk(2, dim=-1)
        return torch.cat([self.code_map(mu), logvar], dim=-1)

    def frozen_layers(self, spec: str) -> list[int]:
        """Indices of the layers a freeze spec holds fixed (``frozen_layer_set``)."""
        return list(frozen_layer_set(spec, self.n_layers, self.bottleneck_cut))

    def frozen_parameters(self, spec: str) -> list[str]:
        """Names of the parameters a freeze spec holds fixed: those of its layers, less the output layer's bias
        where the spec has ``+bias`` and the bottleneck layer (partly frozen: ``trainable_masks``) where a VAE's
        spec has ``+logvar``; the code map unless the spec has ``+code``."""
        parts = parse_spec(spec)
        if parts["code"] and self.code_map is None:
            raise ValueError(f"freeze spec {spec!r} trains a code map: build the model with code_map=True")
        layers = frozen_layer_set(spec, self.n_layers, self.bottleneck_cut)
        partly = self.trainable_masks(spec)
        names = []
        for name, _ in self.named_parameters():
            if name.startswith("code_map."):
                frozen = not parts["code"]
            else:
                frozen = int(name.split(".")[1]) in layers and name not in partly
            if frozen:
                names.append(name)
        output_bias = f"layers.{self.n_layers - 1}.0.bias"
        if parts["bias"] and output_bias in names:
            names.remove(output_bias)
        return names

    def trainable_masks(self, spec: str) -> dict[str, torch.Tensor]:
        """Parameters a spec freezes in part, each with a mask of the elements that train (1) or stay (0): with
        ``+logvar`` and the bottleneck layer frozen, the VAE's log-variance rows of that layer train."""
        parts = parse_spec(spec)
        if not parts["logvar"]:
            return {}
        if self.kind != "vae":
            raise ValueError(f"freeze spec {spec!r}: only the VAE has a log-variance head")
        if self.bottleneck_layer not in frozen_layer_set(spec, self.n_layers, self.bottleneck_cut):
            return {}
        layer = self.layers[self.bottleneck_layer][0]
        masks = {}
        for name, p in (("weight", layer.weight), ("bias", layer.bias)):
            mask = torch.zeros_like(p)
            mask[self.latent_dim :] = 1.0
            masks[f"layers.{self.bottleneck_layer}.0.{name}"] = mask
        return masks


def build_model(run: Run, in_dim: int, code_map: bool | None = None) -> GridAutoencoder:
    """The run's model with its seeded initial weights; with a code map (at the identity) where its freeze spec
    trains one (``code_map`` None) or where ``code_map`` says so (a freeze cell stacks all its variants as one
    ensemble, the others with their map frozen at the identity)."""
    if code_map is None:
        code_map = parse_spec(run.get("freeze", "none"))["code"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(run["seed"])
        return GridAutoencoder(
            in_dim,
            run["encoder"],
            run["bottleneck"],
            run["decoder"],
            run["activation"],
            run["kind"],
            code_map,
            run.get("input_shape"),
        )


INITS = ("default", "centred")


def init_name(run: Run) -> str:
    """The run's initialisation; a config without ``training.init`` keeps the default (PyTorch's seeded) init."""
    return run.get("training", {}).get("init") or "default"


@torch.no_grad()
def centre_init(model: GridAutoencoder, x_train: torch.Tensor) -> GridAutoencoder:
    """Shift the model's biases, in place, so that its pre-activations are centred on the training data.

    Layer by layer with one forward pass of ``x_train`` (each layer sees the already centred previous ones):
    every Linear before the output gets ``b <- b - mean_data(W h + b)``, so each hidden unit's and each code
    unit's pre-activation has zero mean over the training data; the output Linear gets
    ``b <- mean(x_train) - W mean(h)``, so the initial reconstruction's mean is the data mean. For the VAE the
    bottleneck layer's mean rows are centred like the AE's code layer; its log-variance rows are left as they
    are (the posterior variance keeps the default init). Weights are untouched (centring only, no scaling); a
    code map (at the identity at init) is not used. The means are computed in float64 on the CPU from a float64
    copy of the model, then cast to the model's dtype: deterministic and independent of the device.
    """
    x = x_train.detach().to("cpu", torch.float64)
    h = x if model.input_shape is None else x.reshape(x.shape[0], *model.input_shape)
    last = model.n_layers - 1
    for i, layer in enumerate(model.layers):
        module = layer[0]
        weight = module.weight.detach().to("cpu", torch.float64)
        bias = module.bias.detach().to("cpu", torch.float64).clone()
        if isinstance(module, nn.Linear):
            if i < last:
                rows = model.latent_dim if model.kind == "vae" and i == model.bottleneck_layer else bias.shape[0]
                pre = h @ weight.T + bias
                bias[:rows] -= pre[:, :rows].mean(0)
            else:
                bias = x.mean(0) - weight @ h.mean(0)
            pre = h @ weight.T + bias
        else:
            # a convolution's bias is per channel: centre each channel over the points and positions
            conv = F.conv2d if isinstance(module, nn.Conv2d) else F.conv_transpose2d
            unbiased = conv(h, weight, None, module.stride, module.padding)
            if i < last:
                bias -= (unbiased + bias[:, None, None]).mean((0, 2, 3))
            else:
                image = x.reshape(unbiased.shape)
                bias = image.mean((0, 2, 3)) - unbiased.mean((0, 2, 3))
            pre = unbiased + bias[:, None, None]
        module.bias.copy_(bias.to(module.bias.dtype))
        h = layer[1:](pre)
        if model.kind == "vae" and i == model.bottleneck_layer:
            h = h[:, : model.latent_dim]
    return model


def initial_model(run: Run, x_train: torch.Tensor, code_map: bool | None = None) -> GridAutoencoder:
    """The model a run trains from: ``build_model``'s seeded init, centred on the training data
    (``centre_init``) where the run's ``training.init`` is ``centred``. Used wherever a model is built from a run
    config to be trained from its init (the train job, one by one or as an ensemble, and the freeze sweep), so
    a freeze variant starts from exactly its normal run's ``init_state``."""
    return initial_models([run], x_train, code_map)[0]


def initial_models(runs: list[dict], x_train: torch.Tensor, code_map: bool | None = None) -> list[GridAutoencoder]:
    """``initial_model`` of each run. Runs that start from the same weights (a seed's freeze variants differ only in
    what trains) are centred once: the others take the centred biases of the first, which ``centre_init`` would
    compute again bit for bit (same weights, data and activation)."""
    models, centred = [], {}
    for run in runs:
        name = init_name(run)
        if name not in INITS:
            raise ValueError(f"training.init must be one of {INITS}, not {name!r}")
        model = build_model(run, x_train.shape[1], code_map)
        if name == "centred":
            key = (run["kind"], run["activation"], state_digest(model.state_dict()))
            if key not in centred:
                centre_init(model, x_train)
                centred[key] = [layer[0].bias.detach().clone() for layer in model.layers]
            with torch.no_grad():
                for layer, bias in zip(model.layers, centred[key], strict=True):
                    layer[0].bias.copy_(bias)
        if run["kind"] == "vae" and run["vae"].get("logvar_init") == "likelihood":
            with torch.no_grad():  # the posterior starts as narrow as the likelihood's noise (schema: vae.logvar_init)
                model.layers[model.bottleneck_layer][0].bias[model.latent_dim :] = 2 * math.log(run["vae"]["sigma"])
        models.append(model)
    return models


def state_digest(state: dict) -> str:
    """A hash of a state dict's names and exact values."""
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def load_model(path: str, device: str = "cpu") -> tuple[GridAutoencoder, dict]:
    """A trained model and its saved payload (config, initial weights, kept epochs)."""
    payload = torch.load(path, map_location=device, weights_only=True)
    if payload.get("status", "ok") != "ok":
        raise ValueError(
            f"{path} holds no trained weights: run {payload['config']['run_id']} {payload['status']}: "
            f"{payload['error']}"
        )
    model = build_model(payload["config"], payload["in_dim"], "code_map.weight" in payload["state"]).to(device)
    model.load_state_dict(payload["state"])
    return model, payload


def as_model(model: GridAutoencoder | str | Path) -> GridAutoencoder:
    """A trained model, given as itself or as the path of a model.pt the pipeline wrote (on the CPU)."""
    return model if isinstance(model, nn.Module) else load_model(str(model))[0]
