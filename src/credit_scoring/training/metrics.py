"""The business cost, the cost-minimising threshold and the classification metrics.

Training chooses and evaluates with them, and the monitoring pipeline measures the served
model with the same functions on delayed labels; this module imports no model library
(LightGBM, Optuna, matplotlib), so a monitoring run stays light.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import fbeta_score, precision_score, recall_score, roc_auc_score

from credit_scoring.config.data_science import CostParams


def business_cost(y_true: np.ndarray, refuse: np.ndarray, cost: CostParams) -> float:
    """c_FN · (defaults accepted) + c_FP · (good clients refused)."""
    y = np.asarray(y_true).astype(bool)
    refused = np.asarray(refuse).astype(bool)
    false_negatives = np.sum(y & ~refused)
    false_positives = np.sum(~y & refused)
    return float(cost.false_negative * false_negatives + cost.false_positive * false_positives)


def best_threshold(y_true: np.ndarray, scores: np.ndarray, cost: CostParams) -> tuple[float, float]:
    """The threshold (refuse when score >= t) with the lowest cost, and that cost.

    Every distinct score is a candidate, plus +inf (accept everyone): exact, O(n log n).
    """
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(scores, dtype=float)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    # refusing the k highest scores: FN = positives not refused, FP = negatives refused
    refused_pos = np.concatenate([[0], np.cumsum(y_sorted)])
    refused_neg = np.concatenate([[0], np.cumsum(~y_sorted)])
    costs = cost.false_negative * (y.sum() - refused_pos) + cost.false_positive * refused_neg
    # only cut between distinct scores
    valid = np.concatenate([[True], np.r_[s_sorted[1:] != s_sorted[:-1], True]])
    costs = np.where(valid, costs, np.inf)
    k = int(np.argmin(costs))
    threshold = float("inf") if k == 0 else float(s_sorted[k - 1])
    return threshold, float(costs[k])


def classification_metrics(
    y: np.ndarray, scores: np.ndarray, refuse: np.ndarray, cost: CostParams, beta: float
) -> dict[str, float]:
    """AUC, business cost (total and per application) and the decision's quality."""
    total = business_cost(y, refuse, cost)
    return {
        "auc": float(roc_auc_score(y, scores)) if len(set(y)) > 1 else float("nan"),
        "business_cost": total,
        "business_cost_per_application": total / max(len(y), 1),
        "recall": float(recall_score(y, refuse, zero_division=0)),
        "precision": float(precision_score(y, refuse, zero_division=0)),
        "fbeta": float(fbeta_score(y, refuse, beta=beta, zero_division=0)),
        "refusal_rate": float(np.mean(refuse)),
    }
