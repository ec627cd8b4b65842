"""The page's state, as dataclasses (trame-slicer's ``TypedState``): what the UI shows and edits.

The UI binds its widgets to these fields by name and only emits signals; :mod:`.logic` writes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from semiseg.contract import DEFAULT_METHOD, ISLAND_CHOICES, METHOD_LABELS as METHODS  # torch-free: no torch here

__all__ = [
    "METHODS", "LAYOUTS", "SegmentItem", "VolumeItem", "ReviewRow", "PlotState", "TrainState", "ReviewState",
    "StudyState", "AppState",
]

LAYOUTS = {
    "axial": "Slices (one view)",
    "three": "Slices (three views)",
    "threed": "Slices and 3D",
}


@dataclass
class SegmentItem:
    segment_id: str = ""
    name: str = ""
    color: str = "#ffffff"


@dataclass
class VolumeItem:
    """A loaded volume in the page's volume list."""

    node_id: str = ""
    name: str = ""
    in_study: bool = False  # marked as part of the study (trained with its own labels)
    labeled: int = 0  # its labelled slices
    segmented: bool = False  # segmented with the model without training on it ("Apply to more volumes")


@dataclass
class ReviewRow:
    row: int = 0
    index: int = 0
    volume: str = ""  # the volume's name (a study's review list; "" for one volume)
    gain: float | None = None  # Dice points a correction is expected to add (the list's order; None: not given)
    confidence: float = 0.0
    foreground: float = 0.0  # percent of the slice
    labeled: bool = False


@dataclass
class PlotState:
    """The loss and validation Dice curves as SVG polyline points in a 300 x 100 box."""

    loss_points: str = ""
    dice_points: str = ""
    dice_dots: list[list[float]] = field(default_factory=list)
    loss_label: str = ""
    dice_label: str = ""


@dataclass
class TrainState:
    method: str = DEFAULT_METHOD
    methods: list[dict] = field(default_factory=lambda: [{"value": k, "title": v} for k, v in METHODS.items()])
    iterations: int = 300
    size: int = 128
    device: str = "auto"
    keep_largest_island: str = "auto"  # the contract's words (ISLAND_CHOICES): the job's keep_largest_island
    island_choices: list[str] = field(default_factory=lambda: list(ISLAND_CHOICES))
    running: bool = False
    state: str = "idle"  # idle, running, done, cancelled, failed
    percent: float = 0.0
    text: str = ""
    can_retrain: bool = False
    plot: PlotState = field(default_factory=PlotState)


@dataclass
class ReviewState:
    has_results: bool = False
    rows: list[ReviewRow] = field(default_factory=list)
    current: int = -1
    show_pseudo: bool = True
    show_confidence: bool = True
    opacity: float = 0.4
    can_undo: bool = False
    edit_pseudo: bool = False  # the brush edits the pseudo-labels (to correct them before accepting)
    preview_text: str = ""  # "preview at iteration N — preliminary" while the results shown are a preview


@dataclass
class StudyState:
    """A study: several volumes, each with its own labels, trained as one job (one review list across them)."""

    active: bool = False  # the results shown are the study's (the review list names each slice's volume)
    count: int = 0  # volumes marked as part of the study
    can_apply: bool = False  # a trained study model and volumes outside the study to segment with it
    text: str = ""


@dataclass
class AppState:
    volume_loaded: bool = False
    volume_name: str = ""
    busy: bool = False
    message: str = ""
    error: str = ""
    layout: str = "axial"
    layouts: list[dict] = field(default_factory=lambda: [{"value": k, "title": v} for k, v in LAYOUTS.items()])
    volume_rendering: bool = False
    # labels and brush
    segments: list[SegmentItem] = field(default_factory=list)
    active_segment_id: str = ""
    new_segment_name: str = ""
    tool: str = "none"  # none, paint, erase
    brush_size: float = 3.0  # percent of the view's size
    can_undo_stroke: bool = False
    can_redo_stroke: bool = False
    labeled_text: str = ""
    labeled_slices: list[int] = field(default_factory=list)
    current_slice: int = -1
    slice_count: int = 0
    saved_path: str = ""
    volumes: list[VolumeItem] = field(default_factory=list)
    active_volume: str = ""  # node ID of the volume shown and painted
    study: StudyState = field(default_factory=StudyState)
    train: TrainState = field(default_factory=TrainState)
    review: ReviewState = field(default_factory=ReviewState)
