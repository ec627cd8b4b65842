"""Reference-guided pseudo-labels: every query pixel takes the class of its most similar reference.

Seibold, Reiß, Kleesiek, Stiefelhagen, "Reference-guided Pseudo-Label Generation for Medical
Semantic Segmentation", AAAI 2022, arXiv 2112.00735. No public code; this is our reconstruction
from the paper's abstract and method description (choices below; :mod:`semiseg.methods.refguided`).

:class:`ReferenceGuidedLabeler` is a pseudo-label *source* that any method can own: it keeps a
class-balanced, bounded bank of recent labelled pixel embeddings (registered buffers, so it is
saved and resumed with the method's ``state_dict``), and labels query embeddings by nearest
reference in cosine similarity:

``score_c(u) = max over references r of class c of cos(u, r)``, ``label(u) = argmax_c score_c(u)``
(= the class of the nearest reference), ``margin(u) = best - second best score`` (reliability).

Choices left open (ours):

* **Bank.** One FIFO ring of ``bank_size`` embeddings per class; each :meth:`update` writes at
  most ``per_update`` randomly chosen embeddings per class, so one large class or one batch cannot
  flood it. Embeddings are stored L2-normalised and detached.
* **Chunks.** Similarities are computed in blocks of at most ``chunk`` queries x ``chunk``
  references per class, keeping a running maximum: memory is bounded by ``chunk**2`` whatever the
  numbers of pixels; the result is identical to the unchunked computation.
* **Classes without any reference** score -inf (never chosen). For the margin such scores count
  as -1 (the lowest cosine), so a pixel with a single candidate class gets ``best + 1``; when no
  class has a reference at all, label 0 and margin 0 (nothing is reliable).
* **Labels of images** (:func:`reference_labels`): a network's last decoder features (before the
  classifier), in eval mode without gradients, average-pooled by ``feature_stride``; the
  references are the labelled batch's grid cells plus the bank; the per-class scores are upsampled
  to the image (bilinear, before the argmax) or the coarse labels repeated (nearest).
* **Grid references** (:func:`grid_references`): labels are average-pooled (one-hot) to the
  embedding grid; a cell is a reference of its majority class when that class covers at least
  ``min_purity`` of it (cells across boundaries are mixed and skipped).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .pseudo import SemiConfig, evaluating

__all__ = [
    "ReferenceGuidedLabeler",
    "grid_references",
    "scores_to_label",
    "pool_embeddings",
    "upsample_scores",
    "reference_labels",
    "build_references",
]


def pool_embeddings(features: torch.Tensor, stride: int) -> torch.Tensor:
    """Decoder features (B, D, H, W) average-pooled by ``stride`` and L2-normalised over D."""
    if stride > 1:
        features = F.avg_pool2d(features.float(), stride, ceil_mode=True)
    return F.normalize(features.float(), dim=1)


def grid_references(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int, min_purity: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Labelled references on the embedding grid.

    Args:
        features: (B, D, h, w) embeddings.
        labels: (B, H, W) integer labels at any resolution (pooled to h x w by area).
        min_purity: a cell is kept when its majority class covers at least this fraction of it.

    Returns:
        ``(embeddings (N, D), classes (N,))`` of the kept cells, detached.
    """
    b, d, h, w = features.shape
    onehot = F.one_hot(labels.long(), num_classes).permute(0, 3, 1, 2).float()
    frac = F.interpolate(onehot, size=(h, w), mode="area") if onehot.shape[-2:] != (h, w) else onehot
    purity, cls = frac.max(1)
    keep = purity >= min_purity - 1e-6
    emb = features.detach().permute(0, 2, 3, 1)[keep]
    return emb, cls[keep]


def scores_to_label(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Label and margin from per-class best similarities (B, C, ...) (-inf: class without reference).

    Returns:
        ``(label (B, ...) int64, margin (B, ...) float)``.
    """
    s = scores.float().nan_to_num(neginf=-1.0).clamp_min(-1.0)
    top = s.topk(2, dim=1).values if s.shape[1] > 1 else torch.cat([s, torch.full_like(s, -1.0)], 1)
    label = scores.float().argmax(1)
    margin = top[:, 0] - top[:, 1]
    none = torch.isinf(scores).all(1)
    return label.masked_fill(none, 0), margin.masked_fill(none, 0.0)


class ReferenceGuidedLabeler(nn.Module):
    """Nearest-reference labelling with a class-balanced FIFO bank (see module docstring).

    Args:
        num_classes: classes including background.
        dim: embedding size D.
        bank_size: embeddings kept per class (0: no bank, batch references only).
        per_update: at most this many embeddings per class enter the bank per :meth:`update`.
        chunk: default block size of :meth:`class_scores` (``None``: one block).
        min_purity: purity of a grid cell for :meth:`update` with maps (see :func:`grid_references`).

    Use as another method's pseudo-label source: ``update(embeddings, labels)`` with the labelled
    batch, then ``label(embeddings)`` (optionally ``extra=`` the batch's own references) gives
    ``(label, margin)``; the bank travels with the owning method's ``state_dict``.
    """

    def __init__(
        self,
        num_classes: int,
        dim: int,
        bank_size: int = 1024,
        per_update: int = 256,
        chunk: int | None = 4096,
        min_purity: float = 0.5,
    ) -> None:
        super().__init__()
        if bank_size < 0 or per_update < 1 or (chunk is not None and chunk < 1):
            raise ValueError(
                f"bank_size >= 0, per_update >= 1 and chunk >= 1 expected, got {bank_size}, {per_update}, {chunk}"
            )
        self.num_classes, self.dim, self.bank_size, self.per_update, self.chunk = (
            num_classes,
            dim,
            bank_size,
            per_update,
            chunk,
        )
        self.min_purity = min_purity
        self.register_buffer("bank", torch.zeros(num_classes, bank_size, dim))
        self.register_buffer("count", torch.zeros(num_classes, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros(num_classes, dtype=torch.long))

    @torch.no_grad()
    def update(self, embeddings: torch.Tensor, classes: torch.Tensor) -> None:
        """Push labelled embeddings into the bank (FIFO per class).

        Args:
            embeddings: (N, D) with ``classes`` (N,), or maps (B, D, h, w) with labels (B, H, W),
                which are turned into references by :func:`grid_references` (``min_purity``).
        """
        if embeddings.ndim == 4:
            embeddings, classes = grid_references(embeddings, classes, self.num_classes, self.min_purity)
        if self.bank_size == 0:
            return
        emb = F.normalize(embeddings.detach().float(), dim=1).to(self.bank.dtype)
        for c in range(self.num_classes):
            sel = emb[classes == c]
            if sel.shape[0] > self.per_update:
                sel = sel[torch.randperm(sel.shape[0], device=sel.device)[: self.per_update]]
            n = min(sel.shape[0], self.bank_size)
            if n == 0:
                continue
            sel = sel[-n:]
            idx = (int(self.ptr[c]) + torch.arange(n, device=self.bank.device)) % self.bank_size
            self.bank[c, idx] = sel
            self.ptr[c] = (int(self.ptr[c]) + n) % self.bank_size
            self.count[c] = min(int(self.count[c]) + n, self.bank_size)

    def references(self, extra: tuple[torch.Tensor, torch.Tensor] | None = None) -> list[torch.Tensor]:
        """Per class, the (R_c, D) normalised references: the bank's filled slots plus ``extra``."""
        refs = []
        for c in range(self.num_classes):
            parts = [self.bank[c, : int(self.count[c])].float()]
            if extra is not None:
                e, k = extra
                parts.append(F.normalize(e.detach().float()[k == c], dim=1))
            refs.append(torch.cat(parts))
        return refs

    @torch.no_grad()
    def class_scores(
        self, features: torch.Tensor, extra: tuple[torch.Tensor, torch.Tensor] | None = None, chunk: int | None = -1
    ) -> torch.Tensor:
        """Best cosine similarity to each class's references.

        Args:
            features: (B, D, h, w) or (N, D) query embeddings (normalised here).
            extra: references ``(embeddings (M, D), classes (M,))`` used with the bank (e.g. the
                batch's labelled pixels, :func:`grid_references`).
            chunk: block size; ``-1``: the labeler's default; ``None``: one block.

        Returns:
            (B, C, h, w) or (N, C); -inf for classes without any reference.
        """
        chunk = self.chunk if chunk == -1 else chunk
        spatial = features.ndim == 4
        q = (
            features.detach().float().permute(0, 2, 3, 1).reshape(-1, features.shape[1])
            if spatial
            else features.detach().float()
        )
        q = F.normalize(q, dim=1)
        step = q.shape[0] if chunk is None else chunk
        best = torch.full((q.shape[0], self.num_classes), float("-inf"), device=q.device)
        for c, refs in enumerate(self.references(extra)):
            rstep = max(1, refs.shape[0]) if chunk is None else chunk
            for q0 in range(0, q.shape[0], max(1, step)):
                for r0 in range(0, refs.shape[0], rstep):
                    sims = q[q0 : q0 + step] @ refs[r0 : r0 + rstep].T
                    best[q0 : q0 + step, c] = torch.maximum(best[q0 : q0 + step, c], sims.amax(1))
        if spatial:
            b, _, h, w = features.shape
            return best.view(b, h, w, self.num_classes).permute(0, 3, 1, 2)
        return best

    def label(
        self, features: torch.Tensor, extra: tuple[torch.Tensor, torch.Tensor] | None = None, chunk: int | None = -1
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(label, margin)`` of each query embedding (shapes of :meth:`class_scores` without C)."""
        return scores_to_label(self.class_scores(features, extra, chunk))


def upsample_scores(scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling of per-class best similarities (B, C, h, w); -inf classes stay -inf."""
    missing = torch.isinf(scores).flatten(2).all(-1)  # (B, C): classes without references
    up = F.interpolate(scores.nan_to_num(neginf=-1.0).clamp_min(-1.0), size=size, mode="bilinear", align_corners=False)
    return up.masked_fill(missing[..., None, None], float("-inf"))


@torch.no_grad()
def reference_labels(
    labeler: ReferenceGuidedLabeler,
    net: nn.Module,
    x_l: torch.Tensor,
    y_l: torch.Tensor,
    x_u: torch.Tensor,
    feature_stride: int = 4,
    upsample: str = "bilinear",
    update: bool = True,
):
    """Reference-guided labels of ``x_u`` at full resolution, from ``net``'s decoder features.

    One eval-mode pass of ``net`` over ``x_l`` and ``x_u``; references = the labelled batch's grid
    cells (:func:`grid_references`) plus ``labeler``'s bank, which then takes the batch's
    references when ``update``.

    Returns:
        ``(label (B, H, W), margin (B, H, W), net's logits of x_u (B, C, H, W))``.
    """
    with evaluating(net):
        logits, feats = net.decode(net.encode(torch.cat([x_l, x_u])), return_features=True)
    emb = pool_embeddings(feats, feature_stride)
    emb_l, emb_u = emb.split([x_l.shape[0], x_u.shape[0]])
    refs = gather_rows(*grid_references(emb_l, y_l, labeler.num_classes, labeler.min_purity))
    scores = labeler.class_scores(emb_u, extra=refs)
    if update:
        labeler.update(*refs)
    size = tuple(x_u.shape[-2:])
    if upsample == "bilinear":
        label, margin = scores_to_label(upsample_scores(scores, size))
    else:
        label, margin = scores_to_label(scores)
        label = F.interpolate(label[:, None].float(), size=size, mode="nearest")[:, 0].long()
        margin = F.interpolate(margin[:, None], size=size, mode="nearest")[:, 0]
    return label, margin, logits[x_l.shape[0] :]


def gather_rows(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The rows of ``tensors`` (same first dimension) of every rank of a torchrun run, in rank order.

    Under torchrun each rank holds its share of the global labelled batch; the references of a step are
    those of the whole global batch, as in one process (the rows of rank 0, then rank 1, ...), so every
    rank labels with, and adds to its bank, the same references. In one process: ``tensors`` unchanged.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensors
    world = dist.get_world_size()
    n = torch.tensor([tensors[0].shape[0]], dtype=torch.long, device=tensors[0].device)
    counts = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(counts, n)
    sizes = [int(c.item()) for c in counts]
    most = max(sizes)
    out = []
    for t in tensors:
        wire = torch.float32 if t.is_floating_point() else torch.long  # types every backend sends (not bf16 on gloo)
        padded = torch.zeros((most, *t.shape[1:]), dtype=wire, device=t.device)
        padded[: t.shape[0]] = t
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded)
        out.append(torch.cat([p[:k] for p, k in zip(parts, sizes)]).to(t.dtype))
    return tuple(out)


def build_references(config: object, num_classes: int, model: nn.Module) -> ReferenceGuidedLabeler | None:
    """The extra pseudo-label source ``config`` asks for: a :class:`ReferenceGuidedLabeler` over
    ``model``'s last decoder features (``model.features[0]`` channels) for a
    :class:`~semiseg.blocks.pseudo.SemiConfig` with ``references=True``, else ``None`` (no filter)."""
    if isinstance(config, SemiConfig) and config.references:
        return ReferenceGuidedLabeler(num_classes, model.features[0])
    return None
