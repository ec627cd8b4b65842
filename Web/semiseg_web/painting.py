"""The brush: trame-slicer's segmentation editor (Slicer's segment editor logic) on the page's views.

Works around a trame-slicer 2.0.0 bug: the editor's view pipelines of an effect are created by the
layer displayable manager when a view meets the effect's parameter node, and are then given their
view by ``ViewManager.get_view(view_node)``. A view meets the parameter node while it is being
constructed, before its factory has registered it, so a pipeline made then gets no view: the paint
widget is never created (activating the effect raises ``AttributeError`` in that pipeline) and the
brush does nothing in that view until the pipeline is re-attached.
That happens whenever the views are created after an effect was first used (a layout added later,
or an effect's logic made before the layout, as trame-slicer's own segmentation app does).
:func:`reattachEffectPipelines` gives every such pipeline its view and re-activates it; the
:class:`Brush` calls it whenever a tool is chosen and the logic calls it after every layout change.
"""

from __future__ import annotations

from trame_slicer.segmentation import (
    BrushDiameterMode,
    SegmentationEffectErase,
    SegmentationEffectNoTool,
    SegmentationEffectPaint,
)

__all__ = ["TOOLS", "PALETTE", "Brush", "reattachEffectPipelines"]

TOOLS = {"none": SegmentationEffectNoTool, "paint": SegmentationEffectPaint, "erase": SegmentationEffectErase}
# Slicer's default segment colours (its GenericAnatomyColors first entries), in order of creation.
PALETTE = ([0.945, 0.839, 0.569], [0.502, 0.682, 0.502], [0.694, 0.478, 0.396], [0.435, 0.722, 0.824],
           [0.847, 0.396, 0.310], [0.867, 0.510, 0.396], [0.565, 0.933, 0.565], [0.753, 0.408, 0.690])


def reattachEffectPipelines(
    segmentationEditor, viewManager, effectTypes=(SegmentationEffectPaint, SegmentationEffectErase)
) -> int:
    """Give every live pipeline of ``effectTypes`` the view it belongs to; returns how many were fixed.

    A fixed pipeline of the active effect is re-activated, which creates its paint widget.
    """
    fixed = 0
    for effectType in effectTypes:
        if not segmentationEditor.is_effect_type_registered(effectType):
            continue
        effect = segmentationEditor.get_effect(effectType)
        for reference in list(effect.pipelines):
            pipeline = reference()
            if pipeline is None:
                continue
            view = viewManager.get_view(pipeline.GetViewNode()) if pipeline.GetViewNode() is not None else None
            if view is None or getattr(pipeline, "_view", None) is view:
                continue
            pipeline.SetView(view)
            fixed += 1
            if effect.is_active:
                pipeline.SetActive(True)  # creates the widget the view-less pipeline could not make
    return fixed


class Brush:
    """The segment editor as the page uses it: one segmentation at a time, paint or erase with a
    round (not spherical) brush sized in percent of the view, so that only the shown slice changes."""

    def __init__(self, segmentationEditor, viewManager):
        self.editor = segmentationEditor
        self.viewManager = viewManager
        self.tool = "none"
        self.size = 3.0

    @property
    def segmentationNode(self):
        return self.editor.active_segmentation_node

    def attach(self, segmentationNode, volumeNode) -> None:
        """Edit ``segmentationNode`` on ``volumeNode``'s grid, keeping the tool and the selected segment."""
        if segmentationNode is None or volumeNode is None:
            return
        segmentId = self.editor.get_active_segment_id()
        self.editor.set_active_segmentation(segmentationNode, volumeNode)
        if segmentId and segmentId in self.editor.get_segment_ids():
            self.editor.set_active_segment_id(segmentId)
        self.setTool(self.tool)

    def detach(self) -> None:
        self.editor.deactivate_effect()

    def setTool(self, tool: str) -> None:
        if tool not in TOOLS:
            raise ValueError(f"unknown tool {tool!r}; choose one of {sorted(TOOLS)}")
        self.tool = tool
        if self.editor.active_segmentation is None or (tool != "none" and not self.editor.get_active_segment_id()):
            self.editor.deactivate_effect()
            return
        reattachEffectPipelines(self.editor, self.viewManager)  # before activating: a view-less pipeline raises
        effect = self.editor.set_active_effect_type(TOOLS[tool])
        if tool != "none" and effect is not None:
            effect.set_use_sphere_brush(False)
            effect.set_brush_diameter(self.size, BrushDiameterMode.ScreenRelative)

    def setSize(self, percent: float) -> None:
        self.size = float(min(50.0, max(0.5, percent)))
        effect = self.editor.active_effect
        if self.tool != "none" and effect is not None and hasattr(effect, "set_brush_diameter"):
            effect.set_brush_diameter(self.size, BrushDiameterMode.ScreenRelative)

    def addSegment(self, name: str) -> str:
        """Add a segment with the next colour of :data:`PALETTE`; returns its ID."""
        color = PALETTE[self.editor.n_segments % len(PALETTE)]
        return self.editor.add_empty_segment(segment_name=name, segment_color=list(color))

    def selectSegment(self, segmentId: str) -> None:
        self.editor.set_active_segment_id(segmentId)
        self.setTool(self.tool)
