"""The job folder: the one contract between the front ends and the engine (see docs/JOB_FORMAT.md).

:func:`load_job` reads and checks ``JOB_DIR/job.json``; :func:`run_job` trains and predicts as it
describes. Every input is read and checked before anything is written, so bad input leaves no
partial run folder; a crash or cancel leaves the last good checkpoint and a ``status.json`` that
says what happened.

A job comes in two forms (:mod:`semiseg.contract`): :class:`VolumesJob` lists its volumes (format 2), a
:class:`Job` names one labelled image and its unlabelled volumes (format 1's keys, read under format 1 or
2). :func:`prepare` turns either into one list of :class:`PreparedVolume` (the single-volume form is the
list of its image and its unlabelled volumes), so that training, the completion, the previews and the
prediction are one code for both. What a format-1 job writes and emits is what it always did; a
format-2 job adds a ``volume`` event per volume and a ``predicting`` event before each prediction.
"""

from ..contract import JOB_FORMAT_VERSION
from .folder import RunLock, write_status
from .prepare import Prepared, PreparedVolume, check_axis, check_checkpoint, prepare, setup_report
from .reading import Job, VolumesJob, load_job
from .run import run_job

__all__ = ["JOB_FORMAT_VERSION", "Job", "VolumesJob", "RunLock", "load_job", "run_job", "prepare", "write_status",
           "Prepared", "PreparedVolume", "check_axis", "check_checkpoint", "setup_report"]
