"""The cut interface every model of the library is seen through: one chain of layers that can be cut anywhere.

Layer i maps cut i to cut i + 1; cut 0 is the input, cut L the output, ``bottleneck_cut`` the code.
``forward_to(x, k)`` runs layers 0..k-1 and ``forward_from(h, k)`` runs layers k..L-1, so
``forward_from(forward_to(x, k), k) == forward(x)`` for every k: truncation, freezing and stitching all go through
these two. A model supplies ``layer_module(i)``, ``n_layers``, ``layer_names``, ``bottleneck_layer``,
``bottleneck_cut``, ``kind``, ``latent_dim`` and ``input_shape``; this class derives the rest. Its two
implementations are the pipeline's ``GridAutoencoder`` (``nets.models``) and a user's chains
(``nets.chains.ChainAutoencoder``).
"""

from __future__ import annotations

import torch
from torch import nn


class CutChain(nn.Module):
    """The derived half of the interface (module docstring); a subclass defines ``layer_module``, ``n_layers``,
    ``posterior_stats`` (the VAE's (mu, log var) side by side) and the attributes."""

    bottleneck_layer: int
    bottleneck_cut: int
    layer_names: list[str]
    kind: str
    latent_dim: int
    input_shape: tuple[int, ...] | None  # (C, H, W) the rows are reshaped to before layer 0; None: rows

    def run_layer(self, i: int, h: torch.Tensor) -> torch.Tensor:
        """Layer i on the activations at cut i (the input as rows; the output is rows too, the last layer's
        modules flatten it)."""
        if i == 0 and self.input_shape is not None:
            h = h.reshape(h.shape[0], *self.input_shape)
        h = self.layer_module(i)(h)
        return self.read_code(h) if i == self.bottleneck_layer else h

    def read_code(self, stats: torch.Tensor) -> torch.Tensor:
        """The code from the bottleneck layer's output: a VAE's mu (its first ``latent_dim`` columns)."""
        return stats[..., : self.latent_dim] if self.kind == "vae" else stats

    def cut_names(self) -> list[str]:
        return ["input", *self.layer_names]

    def cut_side(self, cut: int) -> str:
        if cut == self.bottleneck_cut:
            return "bottleneck"
        return "encoder" if cut < self.bottleneck_cut else "decoder"

    def forward_to(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """The activations at cut k (the prefix of k layers)."""
        self._check_cut(k)
        h = x
        for i in range(k):
            h = self.run_layer(i, h)
        return h

    def forward_from(self, h: torch.Tensor, k: int) -> torch.Tensor:
        """Run the suffix from cut k to the output."""
        self._check_cut(k)
        for i in range(k, self.n_layers):
            h = self.run_layer(i, h)
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_to(x, self.n_layers)

    def all_cuts(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Activations at every cut 0..L from one pass."""
        cuts = [x]
        for i in range(self.n_layers):
            cuts.append(self.run_layer(i, cuts[-1]))
        return cuts

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log var) of q(z|x); only for the VAE (``posterior_stats``)."""
        return self.posterior_stats(x).chunk(2, dim=-1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.forward_from(z, self.bottleneck_cut)

    def _check_cut(self, k: int) -> None:
        if not 0 <= k <= self.n_layers:
            raise IndexError(f"cut {k} outside 0..{self.n_layers}")
