"""Evidently's verdicts, read back from its report, and the metrics pushed from them."""

from __future__ import annotations

import numpy as np
import pandas as pd
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from credit_scoring.config.monitoring import DriftParams
from credit_scoring.monitoring.drift import SCORE, prepare, run_report
from credit_scoring.monitoring.metrics import build_registry


def frames(shift: float, seed: int = 0, n: int = 3000) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)

    def one(size: int, d: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "income": rng.lognormal(11 + d, 0.5, size),
                "ext": rng.beta(3, 3, size),
                "contract": rng.choice(
                    ["Cash loans", "Revolving loans"], size, p=[0.9 - d, 0.1 + d]
                ),
                SCORE: rng.beta(1, 8 - 4 * d, size),
            }
        )

    return one(n, 0.0), one(n, shift)


FEATURES = ["income", "ext", "contract"]


def test_no_shift_no_drift_and_a_shift_is_named() -> None:
    reference, same = frames(0.0)
    _, verdict = run_report(reference, same, FEATURES, {"contract"}, DriftParams())
    assert not verdict.dataset_drift
    assert verdict.drifted_features == 0 and not verdict.score["drifted"]
    reference, shifted = frames(0.3)
    snapshot, verdict = run_report(reference, shifted, FEATURES, {"contract"}, DriftParams())
    assert verdict.dataset_drift
    assert {f for f, r in verdict.features.items() if r["drifted"]} == {"income", "contract"}
    assert verdict.features["contract"]["method"] == "jensenshannon"
    assert verdict.features["income"]["score"] > 0.1 > verdict.features["ext"]["score"]
    assert verdict.score["drifted"]
    assert "<html" in snapshot.get_html_str(as_iframe=False)[:2000].lower()


def test_thresholds_come_from_the_parameters() -> None:
    reference, shifted = frames(0.3)
    lenient = DriftParams(num_threshold=5.0, cat_threshold=0.99, score_threshold=5.0)
    _, verdict = run_report(reference, shifted, FEATURES, {"contract"}, lenient)
    assert verdict.drifted_features == 0 and not verdict.dataset_drift


def test_an_empty_feature_is_left_out_not_fatal() -> None:
    reference, current = frames(0.0)
    current["ext"] = np.nan
    _, verdict = run_report(reference, current, FEATURES, {"contract"}, DriftParams())
    assert set(verdict.features) == {"income", "contract"}


def test_prepare_types_both_sides_alike() -> None:
    frame = pd.DataFrame({"a": ["1.5", None], "c": pd.Categorical(["x", None])})
    out = prepare(frame, ["a", "c", "missing"], {"c"})
    assert out["a"].dtype == "float64" and out["c"].tolist() == ["x", None]
    assert out["missing"].isna().all()


def test_pushed_metrics_have_bounded_labels() -> None:
    reference, shifted = frames(0.3)
    _, verdict = run_report(reference, shifted, FEATURES, {"contract"}, DriftParams())
    summary = {
        "model_name": "credit_scoring",
        "model_version": "3",
        "timestamp": 1_790_000_000.0,
        "window": {"events": 3000},
        "drift": {**verdict.model_dump(), "threshold_share": 0.1},
        "performance": {"labelled_events": 500, "auc": 0.71, "business_cost_per_application": 0.6},
        "reference_metrics": {"auc": 0.78, "business_cost_per_application": 0.5},
    }
    text = generate_latest(build_registry(summary)).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    model = (("model_name", "credit_scoring"), ("model_version", "3"))
    assert samples[("credit_scoring_monitoring_dataset_drift", model)] == 1.0
    assert samples[("credit_scoring_monitoring_labelled_auc", model)] == 0.71
    assert samples[("credit_scoring_monitoring_test_auc", model)] == 0.78
    features = {
        dict(labels).get("feature") for (name, labels) in samples if "feature" in dict(labels)
    }
    assert features == set(FEATURES)
    label_names = {k for (_, labels) in samples for k, _ in labels}
    assert label_names == {"model_name", "model_version", "feature"}
