"""Evaluation metrics, figures and the model card."""

from __future__ import annotations

from typing import Any

import jinja2
import matplotlib

matplotlib.use("Agg")  # no screen: render to files

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    PrecisionRecallDisplay,
    RocCurveDisplay,
    confusion_matrix,
)


def evaluation_figures(
    y: np.ndarray, scores: np.ndarray, refuse: np.ndarray, threshold: float, name: str
) -> dict[str, Figure]:
    """ROC, precision-recall, confusion matrix, calibration and score distribution by class."""
    figures: dict[str, Figure] = {}
    fig, ax = plt.subplots(figsize=(5, 5))
    RocCurveDisplay.from_predictions(y, scores, ax=ax, name=name, plot_chance_level=True)
    figures["roc_curve"] = fig
    fig, ax = plt.subplots(figsize=(5, 5))
    PrecisionRecallDisplay.from_predictions(y, scores, ax=ax, name=name, plot_chance_level=True)
    figures["precision_recall_curve"] = fig
    fig, ax = plt.subplots(figsize=(5, 4))
    ConfusionMatrixDisplay(
        confusion_matrix(y, refuse), display_labels=["repaid (accept)", "default (refuse)"]
    ).plot(ax=ax, colorbar=False)
    ax.set_title(f"Test set, threshold {threshold:.3f}")
    figures["confusion_matrix"] = fig
    fig, ax = plt.subplots(figsize=(5, 5))
    observed, predicted = calibration_curve(y, scores, n_bins=10, strategy="quantile")
    ax.plot(predicted, observed, marker="o", label=name)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    ax.set(xlabel="mean score", ylabel="observed default rate", title="Calibration")
    ax.legend()
    figures["calibration_curve"] = fig
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = [i / 40 for i in range(41)]
    ax.hist(scores[y == 0], bins=bins, alpha=0.6, density=True, label="repaid")
    ax.hist(scores[y == 1], bins=bins, alpha=0.6, density=True, label="defaulted")
    ax.axvline(threshold, color="black", linestyle="--", label="threshold")
    ax.set(xlabel="score", ylabel="density", title="Score distribution by class")
    ax.legend()
    figures["score_distribution"] = fig
    for figure in figures.values():
        figure.tight_layout()
        plt.close(figure)  # leaves pyplot's registry; the figure can still be saved
    return figures


def stack_figures(figures: list[Figure], title: str) -> Figure:
    """Several rendered figures, one under the other, as one figure (one artifact)."""
    images = []
    for figure in figures:
        figure.canvas.draw()
        images.append(np.asarray(figure.canvas.buffer_rgba()))  # type: ignore[attr-defined]
        plt.close(figure)
    height = sum(img.shape[0] for img in images) / 100
    width = max(img.shape[1] for img in images) / 100
    stacked, axes = plt.subplots(len(images), 1, figsize=(width, height))
    for ax, img in zip(np.atleast_1d(axes), images, strict=True):
        ax.imshow(img)
        ax.axis("off")
    stacked.suptitle(title)
    stacked.tight_layout()
    plt.close(stacked)
    return stacked


def _table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    rows = [
        "| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row) + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join([header, rule, *rows])


def model_card(facts: dict[str, Any], template: str) -> str:
    """A Markdown model card for one registered version, rendered from a Jinja2 template.

    The template (``conf/base/templates/model_card.md.j2``, catalog entry
    ``model_card_template``) is the fork's to edit; ``facts`` holds the values, plus
    ``comparison_table`` (the candidates as a Markdown table). A variable the template uses
    but the facts lack is an error, not a blank.
    """
    environment = jinja2.Environment(
        undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True
    )
    comparison = facts.get("comparison")
    values = {**facts, "comparison_table": _table(comparison) if comparison is not None else ""}
    return environment.from_string(template).render(**values)
