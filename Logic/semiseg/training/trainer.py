"""The shared training loop. It names no method: a method is a loss (see :mod:`semiseg.methods`).

The loop reads as nnU-Net's (start, step, validate, end): the trainer owns the device and mixed
precision, the optimiser and its poly schedule, pairing the labelled and unlabelled streams with
the weak augmentation, validation on held-out labelled slices, progress lines, checkpoints,
resume and cancellation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from ..blocks.augment import weak_augment
from ..blocks.schedule import TrainProgress
from ..errors import Cancelled, CancelToken, InputError  # CancelToken re-exported (torch-free, in errors)
from ..io.slices import SliceSet
from ..methods import Batch, Method, build_method
from ..models import UNet2D, resolve_device, resolve_precision, set_precision
from ..settings import to_dict
from .allocator import keep_freed_memory
from .checkpoint import load_checkpoint, save_checkpoint
from .config import ModelConfig, TrainConfig
from .cpu import torch_default_threads, training_threads
from .distributed import World, any_rank, average_gradients, broadcast_buffers, broadcast_state
from .prefetch import Prefetcher
from .progress import ProgressLog

__all__ = ["TrainData", "Trainer", "CancelToken", "poly_lr"]


@dataclasses.dataclass
class TrainData:
    """Labelled training slices, held-out labelled slices (may be empty) and unlabelled slices."""

    labeled: SliceSet
    val: SliceSet
    unlabeled: SliceSet
    num_classes: int


def poly_lr(base: float, iteration: int, total: int, power: float, warmup: int = 0) -> float:
    """Poly decay ``base * (1 - t / T) ** power`` after an optional linear warm-up."""
    if warmup and iteration < warmup:
        return base * (iteration + 1) / warmup
    return base * (1.0 - iteration / max(1, total)) ** power


class Trainer:
    """Trains a UNet with one method on :class:`TrainData`.

    Args:
        config: optimisation and bookkeeping (:class:`~semiseg.training.config.TrainConfig`).
        method: registered method name; ``method_options`` its config fields.
        run_dir: where ``checkpoint.pt`` and ``progress.jsonl`` go.
        meta: plain values stored in the checkpoint for inference (class names, axis, ...).
        log: progress writer (default: ``run_dir/progress.jsonl`` and stdout).
        cancel: a :class:`CancelToken` (default: the file ``run_dir/cancel``).
        world: the torchrun world this process belongs to (default: one process; see
            :mod:`semiseg.training.distributed`). With N processes every rank draws the same global batch of
            N x ``batch_labeled`` (+ N x ``batch_unlabeled``) slices with the run's data generator and trains
            on its own contiguous share, so the data of a step are those of one process at the global batch;
            gradients are averaged over the ranks, buffers follow rank 0, and only rank 0 writes
            (checkpoints, progress) or validates.
    """

    def __init__(
        self,
        config: TrainConfig,
        method: str,
        method_options: dict[str, Any] | None,
        num_classes: int,
        run_dir: str | os.PathLike,
        model_config: ModelConfig | None = None,
        meta: dict[str, Any] | None = None,
        log: ProgressLog | None = None,
        cancel: CancelToken | None = None,
        world: World | None = None,
    ) -> None:
        config.validate()
        self.config = config
        self.world = world or World()
        self.run_dir = Path(run_dir)
        if self.world.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint_path = self.run_dir / "checkpoint.pt"
        self.device = resolve_device(config.device)
        if config.threads or self.device.type == "cpu":  # the cores other processes leave free (semiseg.training.cpu)
            threads = training_threads(config.threads, torch_default_threads())
            if self.world.distributed and not config.threads:  # the processes on this node share its cores
                threads = max(1, threads // self.world.local_size)
            torch.set_num_threads(threads)
        self.threads = torch.get_num_threads()
        torch.manual_seed(self._torch_seed(0))
        self.generator = torch.Generator().manual_seed(config.seed)
        self.model_config = model_config or ModelConfig()
        self.num_classes = num_classes
        mc = self.model_config
        self.model = UNet2D(mc.in_channels, num_classes, mc.features, mc.dropout)
        self.method: Method = build_method(method, method_options, num_classes, self.model)
        self.method_name, self.method_options = method, dict(method_options or {})
        if self.world.distributed and self.device.type == "cuda":  # batch statistics over the global batch
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.model.to(self.device)
        self.method.to(self.device)
        # the networks autocast themselves
        self.precision = resolve_precision(config.precision, self.device, config.amp)
        set_precision([self.model, self.method], self.precision, self.device)
        if self.device.type == "cpu":
            keep_freed_memory()
        params = list(self.model.parameters()) + self.method.trainable_parameters()
        if config.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(
                params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
            )
        else:
            self.optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        self.amp = self.precision == "fp16"  # CUDA AMP: its loss scaling
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.meta = dict(meta or {})
        self.log = log or (
            ProgressLog(self.run_dir / "progress.jsonl") if self.world.main else ProgressLog(None, None, False)
        )
        self.cancel = cancel or CancelToken(self.run_dir / "cancel")
        self.iteration = 0
        self._prefetch: Prefetcher | None = None
        self._prefetch_data: TrainData | None = None
        self._data_rng: torch.Tensor | None = None
        self.saved_iteration: int | None = None  # the iteration of the last checkpoint written or loaded

    def _torch_seed(self, iteration: int) -> int:
        """The seed of torch's global RNG (dropout, ...): the run's seed on rank 0 (as in one process); on
        another rank one of its own, so that ranks do not drop the same channels of different samples."""
        if self.world.main:
            return self.config.seed
        return (self.config.seed + 1_000_003 * self.world.rank + 7919 * iteration) % (2**63)

    # -- state -------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything needed to predict with, or resume, this run (plain values and tensors only)."""
        return {
            "iteration": self.iteration,
            "model": self.model.state_dict(),
            "method": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state() if self._data_rng is None else self._data_rng,
            "torch_rng": torch.get_rng_state(),
            "method_name": self.method_name,
            "method_options": self.method_options,
            "train_config": to_dict(self.config),
            "model_config": to_dict(self.model_config),
            "num_classes": self.num_classes,
            "meta": self.meta,
        }

    def save(self) -> Path | None:
        """Write the checkpoint (rank 0 only: the other ranks hold the same state and write nothing)."""
        if not self.world.main:
            self.saved_iteration = self.iteration
            return None
        path = save_checkpoint(self.state(), self.checkpoint_path)
        self.saved_iteration = self.iteration
        self.log.emit("checkpoint", iteration=self.iteration, path=path.name)
        return path

    def resume(self, path: str | os.PathLike) -> None:
        """Continue the run saved at ``path``: weights, method state, optimiser, RNGs, iteration."""
        state = load_checkpoint(path, self.device)
        if state.get("method_name") != self.method_name:
            raise InputError(f"checkpoint is of method {state.get('method_name')!r}, not {self.method_name!r}", path)
        if state.get("num_classes") != self.num_classes:
            raise InputError(
                f"checkpoint has {state.get('num_classes')} classes, this run has {self.num_classes}", path
            )
        try:
            self.model.load_state_dict(state["model"])
            self.method.load_state_dict(state["method"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.generator.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            self.iteration = int(state["iteration"])
            if not self.world.main:
                torch.manual_seed(self._torch_seed(self.iteration))
        except (KeyError, RuntimeError, TypeError, ValueError) as err:
            raise InputError(
                f"checkpoint does not fit this run ({type(err).__name__}: {str(err)[:200]})", path
            ) from None
        self.saved_iteration = self.iteration

    def warm_start(self, path: str | os.PathLike) -> None:
        """Start from the weights of an earlier run (retrain); the optimiser starts afresh."""
        state = load_checkpoint(path, self.device)
        if int(state.get("num_classes", -1)) != self.num_classes:
            raise InputError(
                f"checkpoint has {state.get('num_classes')} classes, this job has {self.num_classes}", path
            )
        try:
            self.model.load_state_dict(state["model"])
        except (KeyError, RuntimeError) as err:
            raise InputError(
                f"checkpoint does not fit this run ({type(err).__name__}: {str(err)[:200]})", path
            ) from None

    # -- loop --------------------------------------------------------------------------------
    def _sample(self, data: SliceSet, n: int) -> torch.Tensor:
        if data.weights is not None:  # e.g. interpolated slices, rarer the farther from a labelled one
            return torch.multinomial(data.weights, n, replacement=True, generator=self.generator)
        return torch.randint(0, len(data), (n,), generator=self.generator)

    def _batch(self, data: TrainData, iteration: int) -> Batch:
        """The batch of ``iteration``, drawn with the data generator; no unlabelled images during a warm-up."""
        c = self.config
        n = self.world.size  # every rank draws the global batch, then keeps its share (_share)
        i = self._sample(data.labeled, c.batch_labeled * n)
        x_l, y_l = weak_augment(data.labeled.images[i], data.labeled.labels[i], self.generator)  # type: ignore[index]
        batch = Batch(x_l, y_l)
        k = self.method.unlabeled_batches
        if k and self.method.uses_unlabeled(TrainProgress(iteration, c.iterations)):
            if not len(data.unlabeled):
                raise InputError(f"method {self.method_name!r} needs unlabelled slices, and there are none")
            batch.x_u = weak_augment(
                data.unlabeled.images[self._sample(data.unlabeled, c.batch_unlabeled * n)], None, self.generator
            )
            if k > 1:
                batch.x_u2 = weak_augment(
                    data.unlabeled.images[self._sample(data.unlabeled, c.batch_unlabeled * n)], None, self.generator
                )
        return self._share(self.method.prepare(batch, self.generator))

    def _share(self, batch: Batch) -> Batch:
        """This rank's contiguous share of a global batch (the batch itself in one process)."""
        if not self.world.distributed:
            return batch
        r, n = self.world.rank, self.world.size

        def part(t: torch.Tensor | None) -> torch.Tensor | None:
            if t is None:
                return None
            b = t.shape[0] // n
            return t[r * b : (r + 1) * b]

        return Batch(
            part(batch.x_l),  # type: ignore[arg-type]
            part(batch.y_l),  # type: ignore[arg-type]
            part(batch.x_u),
            part(batch.x_u2),
            [type(s)(part(s.image), part(s.box)) for s in batch.strong],
        )

    def _prepared(self, data: TrainData, iteration: int) -> tuple[Batch, torch.Tensor]:
        return self._batch(data, iteration), self.generator.get_state()

    def _next_batch(self, data: TrainData) -> Batch:
        """This step's batch: from the prefetch thread inside :meth:`fit`, else made now."""
        if self._data_rng is None:
            return self._batch(data, self.iteration)
        if self._prefetch is None or self._prefetch.next != self.iteration or self._prefetch_data is not data:
            self._stop_prefetch()
            self._prefetch = Prefetcher(lambda i: self._prepared(data, i), self.iteration, self.config.iterations)
            self._prefetch_data = data
        batch, self._data_rng = self._prefetch.get()
        return batch

    def _stop_prefetch(self) -> None:
        """Join the prefetch thread and rewind the data generator to the state after the last batch used."""
        if self._prefetch is not None:
            self._prefetch.close()
            self._prefetch = self._prefetch_data = None
            self.generator.set_state(self._data_rng)

    @contextlib.contextmanager
    def prefetching(self) -> Iterator[None]:
        """Steps inside the block take their batches from a prefetch thread, which stops with the block."""
        self._data_rng = self.generator.get_state()
        try:
            yield
        finally:
            self._stop_prefetch()
            self._data_rng = None

    def step(self, data: TrainData) -> dict[str, Any]:
        """One optimiser step; returns the loss terms and statistics."""
        c = self.config
        lr = poly_lr(c.lr, self.iteration, c.iterations, c.poly_power, c.warmup_iterations)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        self.method.train()
        batch = self._next_batch(data)
        progress = TrainProgress(self.iteration, c.iterations)
        out = self.method.loss(self.model, batch, progress)
        if not torch.isfinite(out.total):
            raise FloatingPointError(
                f"loss is {float(out.total)} at iteration {self.iteration}; lower the learning rate"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(out.total).backward()
        loss = float(out.total.detach())
        if self.world.distributed:
            average_gradients([p for g in self.optimizer.param_groups for p in g["params"]], self.world)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.world.distributed:
            broadcast_buffers([self.model], self.world)  # batch-norm statistics, as DDP's broadcast_buffers
        self.method.after_step(self.model, progress)
        terms = out.terms
        if self.world.distributed:
            broadcast_buffers([self.method], self.world)  # banks, teacher statistics
            loss, terms = self._mean_over_ranks(loss, terms)
        self.iteration += 1
        return {"loss": loss, "terms": terms, "stats": out.stats, "lr": lr}

    def _mean_over_ranks(self, loss: float, terms: dict[str, float]) -> tuple[float, dict[str, float]]:
        """The loss and its terms over the global batch (the mean of the ranks'; the statistics stay rank 0's)."""
        import torch.distributed as dist

        t = torch.tensor([loss, *terms.values()], dtype=torch.float64)
        dist.all_reduce(t)
        mean = (t / self.world.size).tolist()
        return mean[0], dict(zip(terms, mean[1:]))

    @torch.no_grad()
    def validate(self, val: SliceSet, chunk: int = 16) -> float:
        """Mean foreground Dice over the held-out labelled slices (classes present in either map)."""
        self.model.eval()
        preds = torch.cat([self.model(val.images[i : i + chunk]).argmax(1) for i in range(0, len(val), chunk)])
        scores = []
        for cls in range(1, self.num_classes):
            p, r = preds == cls, val.labels == cls  # type: ignore[operator]
            denom = p.sum() + r.sum()
            if denom > 0:
                scores.append(float(2 * (p & r).sum() / denom))
        self.model.train()
        return float(sum(scores) / len(scores)) if scores else float("nan")

    def fit(self, data: TrainData, on_step: Callable[[int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Train until ``config.iterations``; returns the final statistics.

        Raises:
            Cancelled: cancellation was requested; a checkpoint of the iterations done so far is saved
                (unless the last one already holds them).

        The batches are prepared one step ahead in a thread (:class:`~semiseg.training.prefetch.Prefetcher`)
        that stops when this returns or raises.
        """
        with self.prefetching():
            return self._fit(data, on_step)

    def _fit(self, data: TrainData, on_step: Callable[[int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
        c = self.config
        data = TrainData(
            data.labeled.to(self.device), data.val.to(self.device), data.unlabeled.to(self.device), data.num_classes
        )
        broadcast_state([self.model, self.method], self.world)  # after a resume or warm start: rank 0's
        spread = (
            {
                "world_size": self.world.size,
                "global_batch_labeled": c.batch_labeled * self.world.size,
                "global_batch_unlabeled": c.batch_unlabeled * self.world.size,
                "lr": c.lr,
            }
            if self.world.distributed
            else {}
        )
        self.log.emit(
            "start",
            **spread,
            iterations=c.iterations,
            iteration=self.iteration,
            method=self.method_name,
            device=str(self.device),
            threads=self.threads,
            precision=self.precision,
            labeled_slices=len(data.labeled),
            val_slices=len(data.val),
            unlabeled_slices=len(data.unlabeled),
        )
        t0, it0 = time.perf_counter(), self.iteration
        last: dict[str, Any] = {}
        val_dice = float("nan")
        while self.iteration < c.iterations:
            if any_rank(self.cancel.requested(), self.world):  # rank 0's cancel file, any rank's SIGTERM
                if self.iteration and self.saved_iteration != self.iteration:
                    self.save()
                self.log.emit("cancelled", iteration=self.iteration)
                raise Cancelled(f"cancelled at iteration {self.iteration}")
            last = self.step(data)
            it = self.iteration
            if on_step is not None:
                on_step(it, last)
            if it % c.log_every == 0 or it == c.iterations or it == it0 + 1:
                elapsed = time.perf_counter() - t0
                left = elapsed / (it - it0) * (c.iterations - it)
                self.log.emit(
                    "iteration",
                    iteration=it,
                    iterations=c.iterations,
                    loss=last["loss"],
                    terms=last["terms"],
                    stats=last["stats"],
                    lr=last["lr"],
                    elapsed=elapsed,
                    seconds_left=left,
                )
            if self.world.main and c.val_every and len(data.val) and (it % c.val_every == 0 or it == c.iterations):
                val_dice = self.validate(data.val)
                self.log.emit("validation", iteration=it, dice=val_dice)
            if c.checkpoint_every and it % c.checkpoint_every == 0 and it != c.iterations:
                self.save()
        self.save()
        seconds = time.perf_counter() - t0
        self.log.emit("trained", iteration=self.iteration, seconds=seconds)
        return {
            "iteration": self.iteration,
            "seconds": seconds,
            "val_dice": None if math.isnan(val_dice) else val_dice,
            **last,
        }
