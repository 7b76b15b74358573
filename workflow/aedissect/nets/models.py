"""MLP autoencoders as one ordered list of layers that can be cut anywhere.

Layer i maps cut i to cut i + 1; cut 0 is the input, cut L the output, and ``bottleneck_cut`` is
the code. ``forward_to(x, k)`` runs layers 0..k-1 and ``forward_from(h, k)`` runs layers k..L-1,
so ``forward_from(forward_to(x, k), k) == forward(x)`` for every k. Truncation, freezing and
stitching all go through these two methods. For the VAE the bottleneck layer emits (mu, log var);
the deterministic path takes mu, training samples z from it (``posterior`` and ``decode``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from aedissect.plans import OUTPUT_BIAS_SUFFIX, frozen_layer_set

ACTIVATION_MODULES = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "linear": nn.Identity}


class MLPAutoencoder(nn.Module):
    def __init__(
        self,
        in_dim: int,
        encoder: list[int],
        bottleneck: int,
        decoder: list[int],
        activation: str = "relu",
        kind: str = "ae",
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
        widths = [in_dim, *encoder, bottleneck, *decoder, in_dim]
        n_layers = len(widths) - 1
        layers = []
        for i in range(n_layers):
            width = widths[i + 1] * (2 if kind == "vae" and i == self.bottleneck_layer else 1)
            # the code and the output stay linear: the likelihood, not the net, squashes the output
            act = "linear" if i in (self.bottleneck_layer, n_layers - 1) else activation
            layers.append(nn.Sequential(nn.Linear(widths[i], width), ACTIVATION_MODULES[act]()))
        self.layers = nn.ModuleList(layers)
        n_enc, n_dec = len(encoder), len(decoder)
        self.layer_names = (
            [f"enc{i + 1}" for i in range(n_enc)] + ["bottleneck"] + [f"dec{i + 1}" for i in range(n_dec)] + ["output"]
        )

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def cut_names(self) -> list[str]:
        return ["input", *self.layer_names]

    def cut_side(self, cut: int) -> str:
        if cut == self.bottleneck_cut:
            return "bottleneck"
        return "encoder" if cut < self.bottleneck_cut else "decoder"

    def _layer(self, i: int, h: torch.Tensor) -> torch.Tensor:
        h = self.layers[i](h)
        if self.kind == "vae" and i == self.bottleneck_layer:
            h = h[:, : self.latent_dim]
        return h

    def forward_to(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """The activations at cut k (the prefix of k layers)."""
        self._check_cut(k)
        h = x
        for i in range(k):
            h = self._layer(i, h)
        return h

    def forward_from(self, h: torch.Tensor, k: int) -> torch.Tensor:
        """Run the suffix from cut k to the output."""
        self._check_cut(k)
        for i in range(k, self.n_layers):
            h = self._layer(i, h)
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_to(x, self.n_layers)

    def all_cuts(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Activations at every cut 0..L from one pass."""
        cuts = [x]
        for i in range(self.n_layers):
            cuts.append(self._layer(i, cuts[-1]))
        return cuts

    def posterior_stats(self, x: torch.Tensor) -> torch.Tensor:
        """(mu, log var) of q(z|x) side by side on the last axis; only for the VAE."""
        return self.layers[self.bottleneck_layer](self.forward_to(x, self.bottleneck_layer))

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log var) of q(z|x); only for the VAE."""
        return self.posterior_stats(x).chunk(2, dim=-1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.forward_from(z, self.bottleneck_cut)

    def _check_cut(self, k: int) -> None:
        if not 0 <= k <= self.n_layers:
            raise IndexError(f"cut {k} outside 0..{self.n_layers}")

    def frozen_layers(self, spec: str) -> list[int]:
        """Indices of the layers a freeze spec holds fixed (``frozen_layer_set``)."""
        return list(frozen_layer_set(spec, self.n_layers, self.bottleneck_cut))

    def frozen_parameters(self, spec: str) -> list[str]:
        """Names of the parameters a freeze spec holds fixed: those of its layers, less the output layer's bias
        where the spec ends in ``+bias``."""
        layers = frozen_layer_set(spec, self.n_layers, self.bottleneck_cut)
        names = [name for name, _ in self.named_parameters() if int(name.split(".")[1]) in layers]
        output_bias = f"layers.{self.n_layers - 1}.0.bias"
        if spec.endswith(OUTPUT_BIAS_SUFFIX) and output_bias in names:
            names.remove(output_bias)
        return names


def build_model(run: dict, in_dim: int) -> MLPAutoencoder:
    """The run's model with its seeded initial weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(run["seed"])
        return MLPAutoencoder(in_dim, run["encoder"], run["bottleneck"], run["decoder"], run["activation"], run["kind"])


def load_model(path: str, device: str = "cpu") -> tuple[MLPAutoencoder, dict]:
    """A trained model and its saved payload (config, initial weights, kept epochs)."""
    payload = torch.load(path, map_location=device, weights_only=True)
    if payload.get("status", "ok") != "ok":
        raise ValueError(
            f"{path} holds no trained weights: run {payload['config']['run_id']} {payload['status']}: "
            f"{payload['error']}"
        )
    model = build_model(payload["config"], payload["in_dim"]).to(device)
    model.load_state_dict(payload["state"])
    return model, payload


def as_model(model: MLPAutoencoder | str | Path) -> MLPAutoencoder:
    """A trained model, given as itself or as the path of a model.pt the pipeline wrote (on the CPU)."""
    return model if isinstance(model, nn.Module) else load_model(str(model))[0]
