"""An older engine against this one in ONE process, interleaved blocks: the UniMatch step at 128 px (batch 4 + 4,
steady state, 1 thread; the new one in fp32 and bf16, prefetch thread on) and the Predictor at 256 px (24 slices).

Run (from the checkout, the older engine copied under another package name):
    mkdir -p /tmp/base && git archive 5c56766 Logic/semiseg | tar -x -C /tmp/base && mv /tmp/base/Logic/semiseg
    /tmp/base/semiseg_base
    python benchmarks/against_baseline.py STEPS BLOCKS /tmp/base CHECKPOINT_AT_256PX
The older engine shares the process, so it also gets the new allocator setting (a conservative ratio).
Write the checkpoint with the older engine: this one reads older checkpoint formats, not the reverse.
The older engine may have the layout before or after the engine's modules moved into folders (io/, training/ ...).
--size, --batch and --slices shrink the run (a quick check of the script, not the measurement).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time

INFER_SIZE = 256  # the plane of the inference volume: a checkpoint trained at 256 px computes at 256


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("steps", type=int, help="steps per block")
    p.add_argument("blocks", type=int, help="interleaved blocks (the inference runs twice as many)")
    p.add_argument("base", help="the folder holding the older engine's package semiseg_base")
    p.add_argument("checkpoint", help="a UNet of 4 classes trained (config) at 256 px")
    p.add_argument("--size", type=int, default=128, help="training size of the UniMatch step in pixels")
    p.add_argument("--batch", type=int, default=4, help="labelled and unlabelled slices per step")
    p.add_argument("--slices", type=int, default=24, help="slices of the inference volume")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    sys.path.insert(0, args.base)
    import numpy as np
    import torch

    torch.set_num_threads(1)
    try:  # the engine's layout since its modules moved into folders
        from semiseg_base.io.slices import SliceSet as BS
        from semiseg_base.training.config import TrainConfig as BC
    except ImportError:  # the flat layout before it (e.g. 5c56766)
        from semiseg_base.config import TrainConfig as BC
        from semiseg_base.data import SliceSet as BS
    from semiseg_base.inference import Predictor as BP
    from semiseg_base.training import TrainData as BTD, Trainer as BT
    from semiseg_base.training.progress import ProgressLog as BL

    from semiseg.inference import Predictor as NP
    from semiseg.io.slices import SliceSet as NS
    from semiseg.training import TrainData as NTD, Trainer as NT
    from semiseg.training.config import TrainConfig as NC
    from semiseg.training.progress import ProgressLog as NL

    size, steps, blocks, batch = args.size, args.steps, args.blocks, args.batch
    g = torch.Generator().manual_seed(0)
    lab = torch.randint(0, 4, (40, size, size), generator=g)
    img = torch.rand(40, 1, size, size, generator=g)

    def data(S, TD):
        return TD(
            S(img, lab, []),
            S(torch.zeros(0, 1, size, size), torch.zeros(0, size, size, dtype=torch.long), []),
            S(img.clone(), None, []),
            4,
        )

    kw = dict(
        iterations=1000,
        size=size,
        batch_labeled=batch,
        batch_unlabeled=batch,
        device="cpu",
        val_every=0,
        checkpoint_every=0,
        threads=1,
        lr=0.03,
    )
    tmp = tempfile.mkdtemp(prefix="semiseg-against-baseline-")
    runs = {}
    tb = BT(BC(**kw), "unimatch", {}, 4, tmp + "/b", log=BL(None, stream=None))
    db = data(BS, BTD)
    runs["today fp32"] = lambda: tb.step(db)
    news = {}
    for p in ("fp32", "bf16"):
        news[p] = NT(NC(**kw, precision=p), "unimatch", {}, 4, tmp + "/" + p, log=NL(None, stream=None))
    dn = data(NS, NTD)
    for t in [tb, *news.values()]:
        t.iteration = 500
    ctx = [t.prefetching() for t in news.values()]
    for c in ctx:
        c.__enter__()
    runs["new fp32"] = lambda: news["fp32"].step(dn)
    runs["new bf16"] = lambda: news["bf16"].step(dn)
    for f in runs.values():
        f()
        f()
    times = {k: [] for k in runs}
    for _ in range(blocks):
        for k, f in runs.items():
            for _ in range(steps):
                s = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - s)
    for c in ctx:
        c.__exit__(None, None, None)
    shutil.rmtree(tmp, ignore_errors=True)  # the trainers' empty run folders
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(
            f"unimatch {size} px {k}: median {v:.3f} s/it over {len(times[k])} steps; today/this = "
            f"{med['today fp32'] / v:.2f}x",
            flush=True,
        )
    ck = args.checkpoint  # a UNet of 4 classes trained (config) at 256 px: the Predictor computes at 256
    preds = {
        "today fp32": BP(ck, "cpu", batch_size=16),
        "new fp32": NP(ck, "cpu", batch_size=16, precision="fp32"),
        "new bf16": NP(ck, "cpu", batch_size=16, precision="bf16"),
    }
    n = args.slices
    vol = np.random.default_rng(0).random((n, INFER_SIZE, INFER_SIZE)).astype(np.float32)
    for p in preds.values():
        p.probabilities(vol[:2])
    it = {k: [] for k in preds}
    for _ in range(blocks * 2):
        for k, p in preds.items():
            s = time.perf_counter()
            p.probabilities(vol)
            it[k].append(time.perf_counter() - s)
    im = {k: statistics.median(v) for k, v in it.items()}
    for k, v in im.items():
        print(
            f"inference {n} slices at {INFER_SIZE} px {k}: median {v:.3f} s, {n / v:.1f} slices/s; today/this = "
            f"{im['today fp32'] / v:.2f}x",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
