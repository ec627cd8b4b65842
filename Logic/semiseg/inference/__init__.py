"""Prediction of whole volumes with a trained run, the review list, and scores against expert labels."""

from .many import ManySummary, image_paths, predict_many, summary_table
from .predictor import Predictor, outputs, predict_volume, write_prediction, write_result
from .review import REVIEW_STATISTIC, ROI_CONFIDENCE, review_slices

__all__ = [
    "Predictor", "predict_volume", "outputs", "write_result", "write_prediction", "review_slices",
    "REVIEW_STATISTIC", "ROI_CONFIDENCE", "predict_many", "image_paths", "summary_table", "ManySummary",
]
