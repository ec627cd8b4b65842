"""SemiSegSlicer's engine: semi-supervised 2D segmentation of volumes from a few labelled slices.

The small public API shared by the CLI, the Slicer module and the web front end:

- :func:`semiseg.job.load_job` / :func:`semiseg.job.run_job`: train and predict as a job folder says;
- :class:`semiseg.inference.Predictor` and :func:`semiseg.inference.write_prediction`: predict a scan;
- :func:`semiseg.inference.metrics.evaluate_volume`: Dice, Jaccard, HD95, ASD per class.

Importing the package loads nothing heavy; the modules import torch and MONAI when used.
"""

__version__ = "0.1.0"
