"""The page: a side panel (labels, training, review) beside Slicer's slice views streamed by trame-slicer.

The UI only shows the state (:mod:`.state`) and emits signals; :mod:`.logic` connects them to actions.
Element IDs (``#train-button``...) are what the browser tests click.
"""

from __future__ import annotations

from trame.ui.vuetify3 import VAppLayout
from trame.widgets import client, html, vuetify3 as v
from trame_server.utils.typed_state import TypedState
from trame_slicer.app.ui import LoadVolumeUI
from trame_slicer.app.ui.load_volume_ui import LoadVolumeButton, LoadVolumeItemsState
from undo_stack import Signal

from semiseg.contract import MIN_ITERATIONS, MIN_SIZE, SIZE_STEP

from .plot import HEIGHT, WIDTH
from .state import AppState

__all__ = ["SemiSegUI"]

_STYLE = """
html { overflow-y: hidden; }
.semiseg-panel .v-card-title { font-size: 1rem; padding-bottom: 0; }
.semiseg-review tbody tr { cursor: pointer; }
.semiseg-review tbody tr.current td { background: rgba(33, 150, 243, 0.35); }
.semiseg-volumes .shown { background: rgba(33, 150, 243, 0.35); }
.semiseg-volumes .volume-name { cursor: pointer; }
.semiseg-plot { background: #1e1e1e; border: 1px solid #444; width: 100%; height: 100px; }
"""


class SemiSegUI:
    """Builds the page on ``server`` and exposes one :class:`Signal` per user action."""

    load_files = Signal(list)
    add_files = Signal(list)
    volume_clicked = Signal(str)
    study_toggled = Signal(str, bool)
    train_study_clicked = Signal()
    apply_clicked = Signal()
    save_clicked = Signal()
    segment_clicked = Signal(str)
    add_segment_clicked = Signal()
    previous_slice_clicked = Signal()
    next_slice_clicked = Signal()
    mark_checked_clicked = Signal()
    undo_stroke_clicked = Signal()
    redo_stroke_clicked = Signal()
    train_clicked = Signal()
    retrain_clicked = Signal()
    cancel_clicked = Signal()
    review_row_clicked = Signal(int)
    review_step_clicked = Signal(int)
    accept_clicked = Signal()
    undo_accept_clicked = Signal()

    def __init__(self, server, layoutManager, typedState: TypedState[AppState], title: str = "SemiSeg review"):
        self.server = server
        self.name = typedState.name
        with VAppLayout(server, theme="dark") as self.layout:
            client.Style(_STYLE)
            self._appBar(title)
            with v.VNavigationDrawer(permanent=True, width=440, location="left", classes="semiseg-panel"):
                self._volumesCard()
                self._labelsCard()
                self._trainCard()
                self._reviewCard()
            with v.VMain(), html.Div(style="height: calc(100vh - 48px); position: relative;", id="views"):
                layoutManager.initialize_layout_grid(self.layout)

    def _trigger(self, signal: Signal, args: str = "") -> str:
        return f"trigger('{self.server.trigger_name(signal)}', [{args}])"

    # -- top bar ----------------------------------------------------------------------------------

    def _appBar(self, title: str) -> None:
        n = self.name
        with v.VAppBar(density="compact"):
            v.VToolbarTitle(title, classes="flex-grow-0 mr-4")
            with html.Div(classes="d-flex align-center", id="load-volume"):
                self.loadVolume = LoadVolumeUI()
                self.loadVolume.on_load_volume.connect(self.load_files)
            html.Span("{{ %s || 'Open a volume (NIfTI, NRRD, MHA, DICOM folder)' }}" % n.volume_name,
                      classes="text-body-2 ml-2", id="volume-name")
            v.VSpacer()
            v.VSelect(v_model=(n.layout,), items=(n.layouts,), item_title="title", item_value="value",
                      density="compact", hide_details=True, variant="outlined", style="max-width: 220px;",
                      classes="mr-2", id="layout-select")
            v.VSwitch(v_model=(n.volume_rendering,), label="Volume rendering", v_show=f"{n.layout} === 'threed'",
                      hide_details=True, density="compact", color="primary", classes="mr-2 flex-grow-0",
                      id="volume-rendering")
            v.VBtn(
                "Save labels",
                prepend_icon="mdi-content-save",
                click=self.save_clicked,
                disabled=(f"!{n.volume_loaded}",),
                variant="tonal",
                id="save-button",
                classes="mr-2",
            )
            v.VProgressCircular(indeterminate=("!!trame__busy",), size=18, width=2, color="#04a94d", classes="mr-3")

    # -- volumes ----------------------------------------------------------------------------------

    def _volumesCard(self) -> None:
        """The loaded volumes: which one is shown (and painted), which are part of the study; more can be added."""
        n = self.name
        with html.Div(v_show=(f"{n.volume_loaded}",), classes="px-4 pt-2 semiseg-volumes", id="volumes"):
            with html.Div(classes="d-flex align-center"):
                html.Span("Volumes", classes="text-subtitle-2")
                v.VSpacer()
                html.Span("Add volumes", classes="text-caption mr-1")
                with html.Div(id="add-volume"):
                    button = LoadVolumeButton(
                        name="Add volumes (a study, or to segment with its model)",
                        load_directory=False,
                        icon="mdi-file-plus",
                        typed_state=TypedState(self.server.state, LoadVolumeItemsState, namespace="semiseg_add_volume"),
                    )
                    button.on_load_volume.connect(self.add_files)
            with html.Table(style="width: 100%; border-collapse: collapse;", classes="text-body-2"):
                with html.Tr(
                    v_for=f"(item, i) in {n.volumes}",
                    key="item.node_id",
                    classes=(f"item.node_id === {n.active_volume} ? 'shown' : ''",),
                ):
                    with html.Td(style="width: 24px;"):
                        html.Input(
                            type="checkbox",
                            id=("'study-check-' + i",),
                            checked=("item.in_study",),
                            title="part of the study (trained with its own labels)",
                            change=self._trigger(self.study_toggled, "item.node_id, $event.target.checked"),
                        )
                    html.Td(
                        "{{ item.name }}",
                        id=("'volume-' + i",),
                        classes="volume-name",
                        click=self._trigger(self.volume_clicked, "item.node_id"),
                    )
                    html.Td(
                        "{{ item.labeled }} labelled{{ item.segmented ? ' · segmented by the model' : '' }}",
                        classes="text-caption text-right",
                        id=("'volume-info-' + i",),
                    )
            html.Div("{{ %s }}" % n.study.text, classes="text-caption text-medium-emphasis", id="study-text")

    # -- labels -----------------------------------------------------------------------------------

    def _labelsCard(self) -> None:
        n = self.name
        v.VCardTitle("1 · Label a few slices")
        with v.VCardText(classes="pt-1"):
            v.VAlert(
                v_if=(n.error,),
                text=(n.error,),
                type="error",
                density="compact",
                closable=True,
                classes="mb-2",
                id="error",
                **{"click:close": f"{n.error} = ''"},
            )
            with html.Div(classes="d-flex flex-wrap align-center", id="segments"):
                with v.VChip(
                    v_for=f"(item, i) in {n.segments}",
                    key="item.segment_id",
                    id=("'segment-' + i",),
                    size="small",
                    classes="mr-1 mb-1",
                    variant=(f"item.segment_id === {n.active_segment_id} ? 'elevated' : 'outlined'",),
                    click=self._trigger(self.segment_clicked, "item.segment_id"),
                ):
                    v.VIcon("mdi-circle", color=("item.color",), start=True)
                    html.Span("{{ item.name }}")
                v.VTextField(
                    v_model=(n.new_segment_name,),
                    placeholder="new segment",
                    density="compact",
                    hide_details=True,
                    variant="underlined",
                    style="max-width: 120px;",
                    classes="ml-1",
                    id="new-segment-name",
                    disabled=(f"!{n.volume_loaded}",),
                )
                v.VBtn(
                    icon="mdi-plus",
                    size="x-small",
                    variant="text",
                    click=self.add_segment_clicked,
                    disabled=(f"!{n.volume_loaded}",),
                    id="add-segment",
                )
            with html.Div(classes="d-flex align-center mt-2"):
                with v.VBtnToggle(
                    v_model=(n.tool,),
                    mandatory=True,
                    density="compact",
                    variant="outlined",
                    divided=True,
                    disabled=(f"!{n.volume_loaded}",),
                ):
                    v.VBtn("View", value="none", prepend_icon="mdi-cursor-default", id="tool-none")
                    v.VBtn("Paint", value="paint", prepend_icon="mdi-brush", id="tool-paint")
                    v.VBtn("Erase", value="erase", prepend_icon="mdi-eraser", id="tool-erase")
                v.VBtn(
                    icon="mdi-undo",
                    size="small",
                    variant="text",
                    click=self.undo_stroke_clicked,
                    disabled=(f"!{n.can_undo_stroke}",),
                    id="undo-stroke",
                )
                v.VBtn(
                    icon="mdi-redo",
                    size="small",
                    variant="text",
                    click=self.redo_stroke_clicked,
                    disabled=(f"!{n.can_redo_stroke}",),
                    id="redo-stroke",
                )
            v.VSlider(
                v_model=(n.brush_size,),
                min=0.5,
                max=20,
                step=0.5,
                label="Brush",
                hide_details=True,
                density="compact",
                thumb_label=True,
                id="brush-size",
            )
            v.VSwitch(
                v_model=(n.review.edit_pseudo,),
                label="Brush edits the pseudo-labels (correct, then accept)",
                v_show=(n.review.has_results,),
                hide_details=True,
                density="compact",
                color="primary",
                id="edit-pseudo",
            )
            with html.Div(classes="d-flex align-center"):
                v.VBtn(
                    icon="mdi-chevron-left",
                    size="small",
                    variant="text",
                    click=self.previous_slice_clicked,
                    disabled=(f"!{n.volume_loaded}",),
                    id="previous-slice",
                )
                html.Span(
                    "Slice {{ %s }} of 0-{{ %s - 1 }}" % (n.current_slice, n.slice_count),
                    id="current-slice",
                    classes="text-body-2",
                )
                v.VBtn(
                    icon="mdi-chevron-right",
                    size="small",
                    variant="text",
                    click=self.next_slice_clicked,
                    disabled=(f"!{n.volume_loaded}",),
                    id="next-slice",
                )
                v.VSpacer()
                v.VBtn(
                    "Checked, empty",
                    size="small",
                    variant="tonal",
                    click=self.mark_checked_clicked,
                    disabled=(f"!{n.volume_loaded}",),
                    id="mark-checked",
                    prepend_icon="mdi-check",
                )
            html.Div("{{ %s }}" % n.labeled_text, classes="text-body-2 mt-1", id="labeled-slices")

    # -- training ---------------------------------------------------------------------------------

    def _trainCard(self) -> None:
        n, t = self.name, self.name.train
        v.VDivider()
        v.VCardTitle("2 · Train")
        with v.VCardText(classes="pt-1"):
            v.VSelect(
                v_model=(t.method,),
                items=(t.methods,),
                item_title="title",
                item_value="value",
                label="Method",
                density="compact",
                hide_details=True,
                id="method",
            )
            with html.Div(classes="d-flex mt-2"):
                v.VTextField(
                    v_model_number=(t.iterations,),
                    type="number",
                    label="Iterations",
                    density="compact",
                    hide_details=True,
                    classes="mr-2",
                    id="iterations",
                    min=MIN_ITERATIONS,
                    style="max-width: 120px;",
                )
                v.VTextField(
                    v_model_number=(t.size,),
                    type="number",
                    label="Size (px)",
                    density="compact",
                    hide_details=True,
                    classes="mr-2",
                    id="size",
                    min=MIN_SIZE,
                    step=SIZE_STEP,
                    style="max-width: 110px;",
                )
                v.VSelect(
                    v_model=(t.device,),
                    items=("['auto', 'cpu', 'cuda', 'mps']",),
                    label="Device",
                    density="compact",
                    hide_details=True,
                    id="device",
                    style="min-width: 110px;",
                )
            v.VSelect(
                v_model=(t.keep_largest_island,),
                items=(t.island_choices,),
                label="Keep largest island",
                density="compact",
                hide_details=True,
                classes="mt-2",
                id="islands",
                title="Keep each structure to its largest 3D island in the network's results (Slicer's Islands "
                "effect): auto, the structures that are one piece in your labels; all; none. Your labelled slices "
                "are never changed.",
            )
            with html.Div(classes="d-flex flex-wrap mt-2"):
                v.VBtn(
                    "Train",
                    prepend_icon="mdi-play",
                    color="primary",
                    click=self.train_clicked,
                    classes="mr-2",
                    disabled=(f"!{n.volume_loaded} || {t.running}",),
                    id="train-button",
                )
                v.VBtn(
                    "Retrain",
                    prepend_icon="mdi-restart",
                    click=self.retrain_clicked,
                    classes="mr-2",
                    disabled=(f"!{t.can_retrain} || {t.running}",),
                    id="retrain-button",
                )
                v.VBtn(
                    "Train study",
                    prepend_icon="mdi-layers-triple",
                    color="primary",
                    variant="tonal",
                    click=self.train_study_clicked,
                    classes="mr-2",
                    disabled=(f"{n.study.count} < 2 || {t.running}",),
                    id="train-study-button",
                )
                v.VBtn(
                    "Cancel",
                    prepend_icon="mdi-stop",
                    color="error",
                    variant="tonal",
                    click=self.cancel_clicked,
                    disabled=(f"!{t.running}",),
                    id="cancel-button",
                )
            v.VBtn(
                "Apply to more volumes",
                prepend_icon="mdi-auto-fix",
                size="small",
                variant="tonal",
                click=self.apply_clicked,
                v_show=(f"{n.study.active}",),
                disabled=(f"!{n.study.can_apply} || {t.running}",),
                classes="mt-2",
                id="apply-button",
            )
            with v.VProgressLinear(
                model_value=(t.percent,), height=18, color="primary", classes="mt-2", rounded=True, id="train-progress"
            ):
                html.Span("{{ Math.round(%s) }} %%" % t.percent, classes="text-caption", id="progress-percent")
            html.Div("{{ %s }}" % t.text, classes="text-caption mt-1", id="progress-text")
            with html.Svg(
                viewBox=f"0 0 {WIDTH:g} {HEIGHT:g}",
                preserveAspectRatio="none",
                classes="semiseg-plot mt-1",
                id="train-plot",
            ) as svg:
                svg.add_child(
                    f'<polyline id="loss-curve" :points="{t.plot.loss_points}" fill="none" '
                    'stroke="#ff9800" stroke-width="1.5" vector-effect="non-scaling-stroke" />'
                )
                svg.add_child(
                    f'<polyline id="dice-curve" :points="{t.plot.dice_points}" fill="none" '
                    'stroke="#4caf50" stroke-width="1.5" vector-effect="non-scaling-stroke" />'
                )
                svg.add_child(
                    f'<circle v-for="(p, i) in {t.plot.dice_dots}" :key="i" :cx="p[0]" :cy="p[1]" r="1.6" '
                    'fill="#4caf50" />'
                )
            with html.Div(classes="d-flex text-caption"):
                html.Span("{{ %s }}" % t.plot.loss_label, style="color: #ff9800;", classes="mr-3", id="loss-label")
                html.Span("{{ %s }}" % t.plot.dice_label, style="color: #4caf50;", id="dice-label")

    # -- review -----------------------------------------------------------------------------------

    def _reviewCard(self) -> None:
        r = self.name.review
        v.VDivider()
        v.VCardTitle("3 · Review")
        with v.VCardText(classes="pt-1"):
            html.Div(
                "Train first: the pseudo-labels and the slices to review appear here.",
                v_if=(f"!{r.has_results}",),
                classes="text-body-2 text-medium-emphasis",
            )
            with html.Div(v_if=(r.has_results,)):
                v.VChip(
                    "Pseudo-labels: {{ %s }}" % r.preview_text,
                    v_if=(r.preview_text,),
                    color="warning",
                    size="small",
                    prepend_icon="mdi-progress-clock",
                    classes="mb-1",
                    id="preview-marker",
                )
                with html.Div(classes="d-flex align-center"):
                    v.VSwitch(
                        v_model=(r.show_pseudo,),
                        label="Pseudo-labels",
                        hide_details=True,
                        density="compact",
                        color="primary",
                        classes="mr-3 flex-grow-0",
                        id="show-pseudo",
                    )
                    v.VSwitch(
                        v_model=(r.show_confidence,),
                        label="Confidence",
                        hide_details=True,
                        density="compact",
                        color="primary",
                        classes="flex-grow-0",
                        id="show-confidence",
                    )
                v.VSlider(
                    v_model=(r.opacity,),
                    min=0,
                    max=1,
                    step=0.05,
                    label="Opacity",
                    hide_details=True,
                    density="compact",
                    disabled=(f"!{r.show_confidence}",),
                    id="confidence-opacity",
                )
                with v.VTable(
                    density="compact", height=210, fixed_header=True, classes="semiseg-review", id="review-table"
                ):
                    with html.Thead(), html.Tr():
                        html.Th("Slice")
                        html.Th("Volume", v_if=(f"{self.name.study.active}",))
                        for heading in ("Gain", "Confidence", "Foreground", "Labelled"):
                            html.Th(heading)
                    with (
                        html.Tbody(),
                        html.Tr(
                            v_for=f"row in {r.rows}",
                            key="row.row",
                            classes=(f"row.row === {r.current} ? 'current' : ''",),
                            click=self._trigger(self.review_row_clicked, "row.row"),
                        ),
                    ):
                        html.Td("{{ row.index }}")
                        html.Td("{{ row.volume }}", v_if=(f"{self.name.study.active}",))
                        html.Td("{{ row.gain === null ? '' : row.gain.toFixed(2) }}")
                        html.Td("{{ row.confidence.toFixed(3) }}")
                        html.Td("{{ row.foreground.toFixed(1) }} %")
                        html.Td("{{ row.labeled ? 'yes' : '' }}")
                with html.Div(classes="d-flex mt-2"):
                    v.VBtn(
                        icon="mdi-chevron-up",
                        size="small",
                        variant="text",
                        click=self._trigger(self.review_step_clicked, "-1"),
                        id="review-previous",
                    )
                    v.VBtn(
                        icon="mdi-chevron-down",
                        size="small",
                        variant="text",
                        click=self._trigger(self.review_step_clicked, "1"),
                        id="review-next",
                    )
                    v.VSpacer()
                    v.VBtn(
                        "Accept slice",
                        prepend_icon="mdi-check-bold",
                        color="success",
                        click=self.accept_clicked,
                        disabled=(f"{r.current} < 0 || {self.name.train.running}",),
                        classes="mr-2",
                        id="accept-button",
                    )
                    v.VBtn(
                        "Undo",
                        prepend_icon="mdi-undo",
                        variant="tonal",
                        click=self.undo_accept_clicked,
                        disabled=(f"!{r.can_undo}",),
                        id="undo-accept",
                    )
            html.Div("{{ %s }}" % self.name.message, classes="text-body-2 mt-2", id="message")
