"""The probes' training loop: AdamW on cached inputs, seeded batches, validation, early stopping, time limits.

The encoder never runs here: a probe caches the key features of its training
images once (in ``fit``) and every iteration draws a batch from that cache. The
loop validates every ``val_every`` iterations on held-out labels (macro-F1),
keeps the best parameters, stops after ``patience`` validations without
improvement, at ``max_iter``, at ``max_time`` seconds, or when ``cancel`` is set,
and restores the best parameters. Progress goes through
:func:`vfm_features.progress.progress_bar`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from vfm_features.progress import progress_bar

SIGMA_LR = 10.0  # learning-rate factor of the attention widths (log sigma)


@dataclass
class TrainLog:
    """What a training run did: iterations, best validation score, why it stopped, and its history."""

    n_iter: int = 0
    best_iter: int = 0
    best_score: float | None = None
    stopped: str = "max_iter"  # "max_iter", "early", "max_time" or "cancelled"
    seconds: float = 0.0
    # (iteration, seconds since the start, mean training loss since the last record, validation macro-F1 or nan,
    #  validation loss or nan)
    history: list[tuple[int, float, float, float, float]] = field(default_factory=list)


def train(net: Any, *, batch: Callable[[np.random.Generator], Any], loss: Callable[[Any, Any], Any],
          validate: Callable[[Any], tuple[float, float]] | None, rng: np.random.Generator, lr: float,
          weight_decay: float,
          max_iter: int, val_every: int, patience: int, max_time: float | None, device: str, precision: str,
          progress: Any = False, desc: str = "train probe", cancel: Any = None) -> TrainLog:
    """Train ``net`` in place; returns a :class:`TrainLog`.

    ``validate(net)`` (eval mode, no gradients) returns (macro-F1, loss) on the
    held-out labels: a higher F1 is better, and at equal F1 a lower loss (so a
    small validation set whose F1 saturates early does not stop training at the
    first model that reaches it).
    """
    import torch

    from vfm_features.models.device import autocast

    log = TrainLog()
    # the attention widths learn faster and are not decayed (decay would pull sigma towards 1 pixel)
    widths = [p for n, p in net.named_parameters() if n.endswith("log_sigma")]
    others = [p for n, p in net.named_parameters() if not n.endswith("log_sigma")]
    optimizer = torch.optim.AdamW([{"params": others},
                                   {"params": widths, "lr": lr * SIGMA_LR, "weight_decay": 0.0}],
                                  lr=lr, weight_decay=weight_decay)
    best_state, best_key = None, None
    bad, losses = 0, []
    start = time.perf_counter()

    def record(it: int) -> bool:
        """Validate after ``it`` iterations; True when training should stop early."""
        nonlocal best_state, best_key, bad, losses
        score, val_loss = float("nan"), float("nan")
        if validate is not None:
            net.eval()
            with torch.no_grad(), autocast(device, precision):
                score, val_loss = (float(v) for v in validate(net))
            net.train()
        log.history.append((it, time.perf_counter() - start, float(np.mean(losses)) if losses else float("nan"),
                            score, val_loss))
        losses = []
        if validate is None:
            return False
        key = (score, -val_loss)
        if best_key is None or key > best_key:
            best_key, bad = key, 0
            log.best_score, log.best_iter = score, it
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            return False
        bad += 1
        return bad >= patience

    net.train()
    bar = progress_bar(range(1, max_iter + 1), progress, desc=desc, total=max_iter)
    try:
        for it in bar:
            data = batch(rng)
            with autocast(device, precision):
                value = loss(net, data)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
            losses.append(float(value.detach()))
            log.n_iter = it
            if cancel is not None and cancel.is_set():
                log.stopped = "cancelled"
                break
            over_time = max_time is not None and time.perf_counter() - start >= max_time
            if it % val_every == 0 or it == max_iter or over_time:
                if record(it):
                    log.stopped = "early"
                    break
            if over_time:
                log.stopped = "max_time"
                break
    finally:
        close = getattr(bar, "close", None)
        if close is not None:
            close()
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    log.seconds = time.perf_counter() - start
    return log


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro-F1 over the classes present in ``y_true`` (as the evaluation harness scores)."""
    from sklearn.metrics import f1_score

    y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    if y_true.size == 0:
        return float("nan")
    return float(f1_score(y_true, y_pred, labels=np.unique(y_true), average="macro", zero_division=0))
