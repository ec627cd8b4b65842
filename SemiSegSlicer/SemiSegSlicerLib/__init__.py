"""Qt-free glue between the Slicer scene and the SemiSegSlicer engine.

Imports only MRML classes (``slicer``), VTK, numpy and the standard library, so that every function
here runs inside Slicer and on the ``slicer-core`` wheel (the tests in ``Testing/mrml``), and can be
shared with the web front end.

- :mod:`.mrmlio`: volumes and segments as arrays on a volume's grid; volume files in and out.
- :mod:`.labeledslices`: which slices count as labelled (painted or checked).
- :mod:`.jobexport`: scene -> job folder (docs/JOB_FORMAT.md).
- :mod:`.jobclient`: the engine process (start, progress, cancel, exit codes).
- :mod:`.resultimport`: run folder -> pseudo-label segmentation, confidence overlay, review list.
- :mod:`.review`: stepping through the review list, accepting a slice and undoing it.
- :mod:`.cache`: the folder of cached jobs.
- :mod:`.curves`: the loss and validation Dice from the progress events, and their MRML plot.
- :mod:`.dependencies`: the engine's Python packages inside Slicer (missing ones, installing them).
- :mod:`.session`: one user's rounds (train, poll, import, review, accept, undo) for a front end.
- :mod:`.study`: :class:`~.study.StudySession`, the same over several scans (one training, one review
  list across them), and segmenting volumes loaded later with the model.
"""

from .cache import clearCache, latestCheckpoint, newJobDir
from .jobclient import JobClient
from .jobexport import ExportedJob, ExportedStudy, exportJob, exportStudyJob, loadExportedJob
from .resultimport import hideConfidence, importResults, setConfidenceOpacity, showConfidence
from .review import ReviewModel, StudyReview, acceptSlice, jumpSlices, sliceCenterRas, undoAccept
from .session import Progress, Session
from .study import StudySession

__all__ = [
    "ExportedJob",
    "ExportedStudy",
    "JobClient",
    "Progress",
    "ReviewModel",
    "Session",
    "StudyReview",
    "StudySession",
    "acceptSlice",
    "clearCache",
    "exportJob",
    "exportStudyJob",
    "hideConfidence",
    "importResults",
    "jumpSlices",
    "latestCheckpoint",
    "loadExportedJob",
    "newJobDir",
    "setConfidenceOpacity",
    "showConfidence",
    "sliceCenterRas",
    "undoAccept",
]
