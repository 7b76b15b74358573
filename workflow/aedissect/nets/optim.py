"""Adam and its learning-rate schedules, without ``torch.optim``.

Building a ``torch.optim`` optimiser imports ``torch._dynamo`` (its methods are wrapped to tell the compiler where
to break graphs), and so does every ``step``: 2.5 to 3 s of every training job's start-up on a 2-core machine, for a
compiler nothing here uses. ``Adam`` calls the kernel ``torch.optim.Adam(fused=True)`` calls
(``torch._fused_adam_``) on the same state, so a step is bitwise torch's (tests/test_training.py compares them
step by step). A schedule is a closed form of the step count (torch's schedulers update the rate recursively and
round differently by an ulp), so a resumed run needs nothing but the count.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

SCHEDULES = ("constant", "cosine", "linear", "onecycle")
# torch.optim.lr_scheduler.OneCycleLR's defaults, which the onecycle schedule follows
ONECYCLE_PCT_START, ONECYCLE_DIV, ONECYCLE_FINAL_DIV = 0.3, 25.0, 1e4
ONECYCLE_BETA1 = (0.85, 0.95)  # Adam's beta1 cycles between these, as OneCycleLR's cycle_momentum does

# step -> (learning rate, beta1 or None to keep the optimiser's)
Schedule = Callable[[int], tuple[float, float | None]]


def _cos_anneal(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def schedule(name: str, lr: float, total_steps: int) -> Schedule | None:
    """The rate (and for onecycle Adam's beta1) of step t of ``total_steps``; None for ``constant``.

    - cosine: lr (1 + cos(pi t / T)) / 2, from lr down to 0 (``CosineAnnealingLR(T_max=T, eta_min=0)``);
    - linear: lr (1 - t / T), a linear warm-down to 0 (``LinearLR(1, 0, total_iters=T)``);
    - onecycle: ``OneCycleLR(max_lr=lr, total_steps=T)``: cosine from lr / 25 up to lr over the first 30% of the
      steps, then down to lr / 25 / 1e4, Adam's beta1 going 0.95 -> 0.85 -> 0.95 the opposite way.
    """
    if name == "constant":
        return None
    total = max(total_steps, 1)
    if name == "cosine":
        return lambda t: (lr * (1 + math.cos(math.pi * min(t, total) / total)) / 2, None)
    if name == "linear":
        return lambda t: (lr * (1 - min(t, total) / total), None)
    if name == "onecycle":
        low, high = ONECYCLE_BETA1
        initial = lr / ONECYCLE_DIV
        final = initial / ONECYCLE_FINAL_DIV
        peak = float(ONECYCLE_PCT_START * total) - 1  # the step at which the rate peaks, as OneCycleLR counts

        def onecycle(t: int) -> tuple[float, float]:
            if t <= peak:
                pct = t / peak if peak > 0 else 1.0
                return _cos_anneal(initial, lr, pct), _cos_anneal(high, low, pct)
            pct = (t - peak) / (total - 1 - peak) if total - 1 > peak else 1.0
            return _cos_anneal(lr, final, pct), _cos_anneal(low, high, pct)

        return onecycle
    raise ValueError(f"training.lr_schedule must be one of {SCHEDULES}, not {name!r}")


class Adam:
    """Adam (Kingma & Ba 2015) with L2 weight decay added to the gradient, as ``torch.optim.Adam(params, lr,
    weight_decay=..., fused=True)`` computes it; with ``schedule`` the rate of each step follows it. Parameters
    without a gradient at a step are skipped, like torch's."""

    def __init__(
        self,
        params: list[torch.Tensor],
        lr: float,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        schedule: Schedule | None = None,
    ):
        self.params = list(params)
        self.lr, self.weight_decay, self.betas, self.eps, self.schedule = lr, weight_decay, betas, eps, schedule
        self.steps = 0  # optimiser steps taken: what the schedule reads
        # per parameter, created at its first step: Adam's step count (a float32 tensor, as the fused kernel wants),
        # first and second moments
        self.state: dict[int, dict[str, torch.Tensor]] = {}

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        lr, beta1 = self.lr, self.betas[0]
        if self.schedule is not None:
            lr, scheduled_beta1 = self.schedule(self.steps)
            beta1 = beta1 if scheduled_beta1 is None else scheduled_beta1
        chosen = [i for i, p in enumerate(self.params) if p.grad is not None]
        for i in chosen:
            if i not in self.state:
                p = self.params[i]
                self.state[i] = {
                    "step": torch.zeros((), dtype=torch.float32, device=p.device),
                    "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
                }
        self.steps += 1
        if not chosen:
            return
        steps = [self.state[i]["step"] for i in chosen]
        torch._foreach_add_(steps, 1)
        torch._fused_adam_(
            [self.params[i] for i in chosen],
            [self.params[i].grad for i in chosen],
            [self.state[i]["exp_avg"] for i in chosen],
            [self.state[i]["exp_avg_sq"] for i in chosen],
            [],
            steps,
            amsgrad=False,
            lr=lr,
            beta1=beta1,
            beta2=self.betas[1],
            weight_decay=self.weight_decay,
            eps=self.eps,
            maximize=False,
            grad_scale=None,
            found_inf=None,
        )

    def state_dict(self) -> dict:
        return {"steps": self.steps, "state": {i: dict(s) for i, s in self.state.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state["steps"])
        self.state = {
            int(i): {k: v.to(self.params[int(i)].device) for k, v in s.items()} for i, s in state["state"].items()
        }
