"""Which order of the review list pays most? The correction loop of ``semiseg bench review`` with the network
held fixed (the measurement behind :data:`semiseg.inference.review.COMMITTEE_NETWORK`).

The study (``--scans`` scans with ``--k`` well-spread labelled slices each, as in ``semiseg bench review``)
trains once, at that command's budget (or loads ``--checkpoint``, which a first run saves). Then, for each
order, ``--corrections`` times: the first unlabelled slice of the study in that order gets the expert's labels
and is accepted, the scan's prior is rebuilt, and the study's Dice is recorded. Without the retraining it takes
minutes where the loop takes half an hour, and the orders see the same network. Orders:

- ``confidence``: the least confident slice (the mean confidence over its region of interest);
- ``gain:W``: the largest expected gain (:func:`semiseg.inference.review.expected_gain`) with the network
  weighing ``W`` in the committee (0: the fused result alone; the review list's own weight is
  :data:`~semiseg.inference.review.COMMITTEE_NETWORK`);
- ``random``: a slice drawn uniformly, the Dice averaged over ``--draws`` draws.

Run:
    OMP_NUM_THREADS=1 python benchmarks/review_order.py --dataset acdc --checkpoint acdc3.pt
    OMP_NUM_THREADS=1 python benchmarks/review_order.py --dataset la --checkpoint la3.pt
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import torch

from semiseg.completion import ShapePrior
from semiseg.inference import Predictor
from semiseg.training import Trainer
from semiseg.training.progress import ProgressLog
from semiseg_bench import review as loop
from semiseg_bench.common import bench_train_config, default_data_root, str_list


def first_network(args: argparse.Namespace, study, extra, classes: int) -> torch.nn.Module:
    """The study's first network, as ``semiseg bench review`` trains it (kept in ``--checkpoint``)."""
    path = Path(args.checkpoint) if args.checkpoint else None
    config = dataclasses.replace(
        bench_train_config(args, checkpoint_every=0, log_every=args.iterations, threads=0), iterations=args.iterations
    )
    with tempfile.TemporaryDirectory(prefix="semiseg-order-") as tmp:
        trainer = Trainer(config, args.method, loop._options(args.method, args.iterations), classes, tmp,
                          meta={"axis": loop.AXIS}, log=ProgressLog(None, stream=None))
        if path is not None and path.is_file():
            trainer.model.load_state_dict(torch.load(path, weights_only=True))
        else:
            trainer.fit(loop._train_data(study, extra, args.size, classes))
            if path is not None:
                torch.save(trainer.model.state_dict(), path)
    return trainer.model.eval()


class Study:
    """The study's scans with the network's probabilities held fixed; each scan's prior is rebuilt when its labelled
    slices change, and its result for each committee weight."""

    def __init__(self, scans, probs, classes: int):
        self.scans, self.probs, self.classes = scans, probs, classes
        self.start = [set(s.labeled) for s in scans]
        self.priors: dict = {}
        self.results: dict = {}

    def reset(self) -> None:
        for scan, labeled in zip(self.scans, self.start):
            scan.labeled = set(labeled)

    def result(self, s: int, weight: float) -> dict[str, np.ndarray]:
        scan = self.scans[s]
        labeled = tuple(sorted(scan.labeled))
        if (s, labeled) not in self.priors:
            self.priors[s, labeled] = ShapePrior.build(scan.as_labeled().labels, loop.AXIS, labeled, self.classes,
                                                       image=scan.volume.image)
        if (s, labeled, weight) not in self.results:
            self.results[s, labeled, weight] = self.priors[s, labeled].outputs(self.probs[s], weight)
        return self.results[s, labeled, weight]

    def dice(self, weight: float) -> float:
        """The study's Dice (the labels do not depend on the committee's ``weight``: the one already computed)."""
        return float(np.mean([loop._mean_dice(self.result(s, weight)["labels"], scan.volume.labels, self.classes)
                              for s, scan in enumerate(self.scans)]))

    def run(self, order: str, corrections: int, seed: int = 0) -> list[float]:
        """The study's Dice after 0 .. ``corrections`` corrections in ``order``, each chosen as ``semiseg bench
        review`` chooses it (``gain:W`` is its ``review`` strategy with the committee weight ``W``)."""
        self.reset()
        rng = np.random.default_rng(seed)
        weight = float(order.split(":")[1]) if order.startswith("gain:") else 0.0
        strategy = "review" if order.startswith("gain:") else order
        curve = [self.dice(weight)]
        for _ in range(corrections):
            done = [self.result(s, weight) for s in range(len(self.scans))] if strategy != "random" else []
            s, i = loop._choose(strategy, self.scans, done, rng)
            self.scans[s].labeled.add(i)
            curve.append(self.dice(weight))
        return curve


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    loop.add_arguments(p)
    p.set_defaults(held_out=0)
    p.add_argument("--orders", type=str_list, default=["confidence", "gain:0", "gain:0.05", "gain:0.1", "gain:0.25",
                                                       "gain:0.5", "random"])
    p.add_argument("--draws", type=int, default=10, help="random orders averaged")
    p.add_argument("--checkpoint", help="the first network: loaded if it exists, else trained and saved here")
    a = p.parse_args()
    torch.manual_seed(a.seed)
    root = Path(a.data) if a.data else default_data_root() / a.dataset
    scans, _, extra, classes, _ = loop.load_study(root, a.dataset, a.scans, a.k, 0, a.unlabeled)
    model = first_network(a, scans, extra, classes)
    predictor = Predictor.of_model(model, a.size, classes, loop.AXIS, torch.device("cpu"))
    study = Study(scans, [predictor.probabilities(s.volume.image, loop.AXIS) for s in scans], classes)
    print(f"{a.dataset}: study Dice (%) by corrected slices, the network fixed ({a.scans} scans x {a.k} slices)")
    print("| order | " + " | ".join(str(n) for n in range(a.corrections + 1)) + " |")
    print("|---|" + "---|" * (a.corrections + 1))
    for order in a.orders:
        runs = [study.run(order, a.corrections, d) for d in range(a.draws if order == "random" else 1)]
        print(f"| {order} | " + " | ".join(f"{100 * x:.1f}" for x in np.mean(runs, 0)) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
