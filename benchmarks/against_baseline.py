"""An older engine against this one in ONE process, interleaved blocks: the UniMatch step at 128 px (batch 4 + 4,
steady state, 1 thread; the new one in fp32 and bf16, prefetch thread on) and the Predictor at 256 px (24 slices).

Run (from the checkout, the older engine copied under another package name):
    mkdir -p /tmp/base && git archive 5c56766 Logic/semiseg | tar -x -C /tmp/base && mv /tmp/base/Logic/semiseg
    /tmp/base/semiseg_base
    python benchmarks/against_baseline.py STEPS BLOCKS /tmp/base CHECKPOINT_AT_256PX
The older engine shares the process, so it also gets the new allocator setting (a conservative ratio).
"""

import statistics
import sys
import tempfile
import time

sys.path.insert(0, sys.argv[3])
import numpy as np
import torch

torch.set_num_threads(1)
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

size, steps, blocks = 128, int(sys.argv[1]), int(sys.argv[2])
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
    batch_labeled=4,
    batch_unlabeled=4,
    device="cpu",
    val_every=0,
    checkpoint_every=0,
    threads=1,
    lr=0.03,
)
tmp = tempfile.mkdtemp()
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
med = {k: statistics.median(v) for k, v in times.items()}
for k, v in med.items():
    print(
        f"unimatch 128 px {k}: median {v:.3f} s/it over {len(times[k])} steps; today/this = "
        f"{med['today fp32'] / v:.2f}x",
        flush=True,
    )
ck = sys.argv[4]  # a UNet of 4 classes trained (config) at 256 px: the Predictor computes at 256
preds = {
    "today fp32": BP(ck, "cpu", batch_size=16),
    "new fp32": NP(ck, "cpu", batch_size=16, precision="fp32"),
    "new bf16": NP(ck, "cpu", batch_size=16, precision="bf16"),
}
vol = np.random.default_rng(0).random((24, 256, 256)).astype(np.float32)
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
        f"inference 24 slices at 256 px {k}: median {v:.3f} s, {24 / v:.1f} slices/s; today/this = "
        f"{im['today fp32'] / v:.2f}x",
        flush=True,
    )
