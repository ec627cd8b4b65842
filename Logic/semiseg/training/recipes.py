"""Training recipes: the papers' settings, and ours for the CPU budget a user waits for.

A job names a recipe (``"auto"`` by default); the recipe supplies the training settings and
method options the job leaves out. Whatever the job sets explicitly wins.

- ``"paper"``: the papers' settings, i.e. the defaults of :class:`~semiseg.training.config.TrainConfig`
  (256x256, batch 12 + 12, SGD lr 0.01) and of each method's config (constant unsupervised
  weight 1 from the first iteration). They need tens of thousands of GPU iterations.
- ``"cpu"`` (ours): 1000 iterations at 128x128, batch 4 + 4, SGD lr 0.03, bfloat16 forward passes
  where the CPU has native bf16 (``precision="auto"``, :mod:`semiseg.models.precision`), and for the
  semi-supervised methods a supervised warm-up of 20 % of the iterations followed by a ramp-up of
  the unsupervised weight over 30 % (:func:`~semiseg.blocks.schedule.unsup_weight`). This is the budget of
  the ACDC benchmark in docs/BENCHMARKS.md (``semiseg bench acdc``), where these choices let the
  semi-supervised methods beat the supervised baseline within minutes on a CPU.
  The learning rate is that benchmark's: a study of a few slices per scan may want a larger one, as
  ACDC's 3 patients x 3 slices do, while LA's 3 volumes x 3 slices did not (docs/BENCHMARKS.md
  section 2b, "Kept in session 14"), so the recipe leaves it to the job's ``lr``.
  Runs shorter than 500 iterations warm up for half of them and ramp up over the next 20 %
  (:data:`SHORT_RUN`): with the 0.2/0.3 schedule, a 200-iteration run would count its own
  pseudo-labels after 40 supervised iterations, when they are still poor; in the clinician
  benchmark (docs/BENCHMARKS.md section 2, ``semiseg bench clinician``) the longer warm-up harms
  less, without making the semi-supervised run beat ``supervised``.
  A warm-started run (a retrain: the job's ``init_checkpoint``) neither warms up nor ramps up
  (:data:`WARM_START`): the warm-up is there because a new network's pseudo-labels are poor, and a
  trained one's are not; supervised steps alone on the few labelled slices pulled the network away from
  what the unlabelled slices had taught it (in ``semiseg bench review``, docs/BENCHMARKS.md section 2b,
  the held-out patients' Dice fell after each short retraining that warmed up, and rose without).
- ``"quick"`` (ours): the first look a user waits for at the screen, at most a minute on one CPU
  core for a left-atrium MRI volume (88 slices): 600 iterations at 96x96, otherwise as ``"cpu"``.
  With ``"supervised"`` and the completion of :mod:`semiseg.completion`, this is the quick budget
  of the clinician benchmark (docs/BENCHMARKS.md section 2).
- ``"auto"``: ``"cpu"`` when the run's device resolves to the CPU, else ``"paper"``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import InputError

__all__ = [
    "RECIPES",
    "CPU_TRAIN",
    "QUICK_TRAIN",
    "SHORT_BUDGET",
    "SHORT_RUN",
    "SHORT_RUN_ITERATIONS",
    "WARM_START",
    "resolve_recipe",
    "apply_recipe",
]

RECIPES = ("auto", "cpu", "quick", "paper")

CPU_TRAIN: dict[str, Any] = {
    "iterations": 1000,
    "size": 128,
    "batch_labeled": 4,
    "batch_unlabeled": 4,
    "lr": 0.03,
    "precision": "auto",
}
"""Training settings of the ``"cpu"`` recipe (fields of :class:`~semiseg.training.config.TrainConfig`)."""

QUICK_TRAIN: dict[str, Any] = {**CPU_TRAIN, "iterations": 600, "size": 96}
"""Training settings of the ``"quick"`` recipe."""

SHORT_BUDGET: dict[str, float] = {"warmup": 0.2, "rampup": 0.3}
"""Method options of the ``"cpu"`` recipe, given to every method whose config has them."""

SHORT_RUN: dict[str, float] = {"warmup": 0.5, "rampup": 0.2}
"""The same for runs of fewer than :data:`SHORT_RUN_ITERATIONS` iterations."""

SHORT_RUN_ITERATIONS = 500

WARM_START: dict[str, float] = {"warmup": 0.0, "rampup": 0.0}
"""Method options of the ``"cpu"`` and ``"quick"`` recipes for a warm-started run, whatever its length."""


def resolve_recipe(recipe: str, device: str = "auto") -> str:
    """``"cpu"``, ``"quick"`` or ``"paper"`` for ``recipe`` on ``device`` (``"auto"`` looks at where training runs)."""
    if recipe not in RECIPES:
        raise InputError(f"recipe must be one of {', '.join(RECIPES)}, got {recipe!r}")
    if recipe != "auto":
        return recipe
    from ..models.device import resolve_device

    on_cpu = device == "cpu" or (
        device == "auto" and resolve_device("auto").type == "cpu"
    )  # a missing GPU asked for fails later
    return "cpu" if on_cpu else "paper"


def apply_recipe(
    recipe: str, method: str, train: dict[str, Any], options: dict[str, Any], warm_start: bool = False
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The resolved recipe name, training settings and method options of a job.

    Args:
        recipe: one of :data:`RECIPES`.
        method: a registered method name (its config decides which recipe options apply).
        train: the job's own training settings (they win over the recipe's).
        options: the job's own method options (they win over the recipe's).
        warm_start: the run starts from a trained network (the job's ``init_checkpoint``): :data:`WARM_START`.
    """
    from ..methods import METHODS

    name = resolve_recipe(recipe, str(train.get("device", "auto")))
    if name == "paper":
        return name, dict(train), dict(options)
    fields = (
        {f.name for f in dataclasses.fields(METHODS[method].Config)}
        if dataclasses.is_dataclass(METHODS[method].Config)
        else set()
    )
    train = {**(QUICK_TRAIN if name == "quick" else CPU_TRAIN), **train}
    schedule = (
        WARM_START if warm_start else SHORT_RUN if int(train["iterations"]) < SHORT_RUN_ITERATIONS else SHORT_BUDGET
    )
    extra = {k: v for k, v in schedule.items() if k in fields}
    return name, train, {**extra, **options}
