"""Score and explain applications with the packaged champion.

LightGBM (the usual champion) and XGBoost are scored with their native boosters on a NumPy
row built by ``features.RowTransformer``: no pandas on the hot path. Their SHAP values are
the boosters' own exact TreeSHAP (LightGBM ``pred_contrib``, XGBoost ``pred_contribs``), in
log-odds. Other scikit-learn champions go through a DataFrame and a permutation SHAP
explainer on a small background sample stored with the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from credit_scoring.core.encoding import category_codes, encode_categories, model_input
from credit_scoring.core.spec import BACKGROUND_FILE, MODEL_DIR, ServingSpec, load_background

Decision = Literal["accept", "refuse"]


@dataclass(frozen=True)
class Contribution:
    feature: str
    value: float | str | None
    shap_value: float


@dataclass(frozen=True)
class Explanation:
    probability: float
    base_value: float
    units: str  # "log_odds" (TreeSHAP) or "probability" (permutation SHAP)
    contributions: list[Contribution]  # sorted by |shap_value|, largest first


def _plain(value: Any) -> float | str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    number = float(value)
    return None if math.isnan(number) else number


class Scorer:
    """The champion with its threshold, its feature code and its explainer."""

    def __init__(self, spec: ServingSpec, model_path: Path) -> None:
        self.spec = spec
        self.threshold = spec.threshold
        self.features = spec.features
        self.transformer = spec.transformer()
        self.booster: Any = None
        self.estimator: Any = None
        self._explainer: Any = None
        self.codes: dict[str, list[str]] = spec.categories
        self._trees: _Trees | None = None
        if spec.kind in ("lightgbm", "xgboost"):
            trees = _LightGBMTrees if spec.kind == "lightgbm" else _XGBoostTrees
            self._trees = trees(model_path / MODEL_DIR)
            self.booster = self._trees.booster  # the library's own Booster
            if self._trees.feature_names() != self.features:
                raise ValueError(
                    "The packaged booster's features differ from serving_spec.json; rebuild "
                    "the bento with `make build`."
                )
        else:
            self.estimator = load_skops_model(model_path / MODEL_DIR)
            background = load_background(model_path / BACKGROUND_FILE)[self.features]
            # The explainer works on numbers: text columns as codes (the contract's categories).
            declared = {
                name: list(col.allowed or [])
                for name, col in spec.contract.columns.items()
                if col.allowed
            }
            self.codes = category_codes(background, declared)
            self._explainer = self._permutation_explainer(background)

    # --- scores -------------------------------------------------------------------------

    def probabilities(self, records: list[dict[str, Any]]) -> np.ndarray:
        if self._trees is not None:
            rows = np.vstack([self.transformer.vector(r) for r in records])
            return self._trees.predict(rows)
        frame = self.frame(records)
        scores = self.estimator.predict_proba(model_input(frame, self.spec.kind, {}))  # type: ignore[arg-type]
        return np.asarray(scores)[:, 1]

    def probabilities_frame(self, frame: pd.DataFrame, num_threads: int = 1) -> np.ndarray:
        """Scores of a whole table (one application per row, the API's request columns).

        The batch path: one 2-D model input for the table (``RowTransformer.matrix``) and one
        booster call, which gives the same numbers as ``probability`` row by row (the same
        operations on the same floats; tested to the bit). Other champions score through the
        records, as the API does.
        """
        if self._trees is not None:  # LightGBM or XGBoost: one call on the whole matrix
            return self._trees.predict(self.transformer.matrix(frame), threads=num_threads)
        records = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
        return self.probabilities([{str(k): v for k, v in r.items()} for r in records])

    def decisions(self, probabilities: np.ndarray) -> np.ndarray:
        """``decision`` for an array of scores (``"refuse"`` at or above the threshold)."""
        return np.where(np.asarray(probabilities) >= self.threshold, "refuse", "accept")

    def probability(self, record: dict[str, Any]) -> float:
        if self._trees is not None:
            return float(self._trees.predict(self.transformer.vector(record))[0])
        return float(self.probabilities([record])[0])

    def refuse(self, probability: float) -> bool:
        return probability >= self.threshold

    def decision(self, probability: float) -> Decision:
        """The API's decision on a score: refuse at or above the threshold."""
        return "refuse" if self.refuse(probability) else "accept"

    def frame(self, records: list[dict[str, Any]]) -> pd.DataFrame:
        """Processed records as the pipeline's primary table holds them (model features)."""
        rows = [self.transformer.record(r) for r in records]
        frame = pd.DataFrame(rows).reindex(columns=self.features)
        for column in self.codes:
            if column in frame:
                frame[column] = frame[column].astype(object)
        return frame

    # --- explanations -------------------------------------------------------------------

    def explain(self, record: dict[str, Any]) -> Explanation:
        processed = self.transformer.record(record)
        if self._trees is not None:
            row = self.transformer.vector(record)
            contrib = self._trees.contributions(row)[0]
            values, base = contrib[:-1], float(contrib[-1])
            probability = float(self._trees.predict(row)[0])  # same as /predict
            units = "log_odds"
        else:
            encoded = encode_categories(self.frame([record]), self.codes)
            result = self._explainer(encoded.to_numpy(dtype=float))
            values = np.asarray(result.values)[0]
            base = float(np.asarray(result.base_values).reshape(-1)[0])
            probability = self.probability(record)
            units = "probability"
        order = np.argsort(-np.abs(values), kind="stable")
        contributions = [
            Contribution(
                feature=self.features[i],
                value=_plain(processed.get(self.features[i])),
                shap_value=float(values[i]),
            )
            for i in order
        ]
        return Explanation(probability, base, units, contributions)

    def reasons(self, explanation: Explanation, top: int | None = None) -> list[str]:
        """The largest contributions in plain words."""
        top = top or self.spec.limits.top_reasons
        out = []
        for c in explanation.contributions[:top]:
            if c.shap_value == 0.0:
                break
            direction = "raises" if c.shap_value > 0 else "lowers"
            shown = "missing" if c.value is None else _format(c.value)
            out.append(f"{self.spec.describe(c.feature)} ({shown}) {direction} the risk of default")
        return out

    def _permutation_explainer(self, background: pd.DataFrame) -> Any:
        import shap

        encoded = encode_categories(background, self.codes).to_numpy(dtype=float)
        decode = {i: self.codes[name] for i, name in enumerate(self.features) if name in self.codes}

        def positive(x: np.ndarray) -> np.ndarray:
            frame = pd.DataFrame(x, columns=self.features).astype(object)
            for i, values in decode.items():
                frame.iloc[:, i] = [
                    values[int(v)] if v == v and 0 <= v < len(values) else np.nan for v in x[:, i]
                ]
            for i, name in enumerate(self.features):
                if i not in decode:
                    frame[name] = frame[name].astype(float)
            scores = self.estimator.predict_proba(model_input(frame, self.spec.kind, {}))  # type: ignore[arg-type]
            return np.asarray(scores)[:, 1]

        masker = shap.maskers.Independent(encoded, max_samples=len(encoded))
        return shap.explainers.Permutation(positive, masker)


class _Trees(Protocol):
    """A native booster on model-input rows (NumPy, category codes, NaN for missing)."""

    booster: Any

    def feature_names(self) -> list[str]: ...

    def predict(self, rows: np.ndarray, threads: int = 1) -> np.ndarray:
        """Probabilities of default, float64, one per row (``threads``: a batch's)."""
        ...

    def contributions(self, rows: np.ndarray) -> np.ndarray:
        """TreeSHAP in log-odds, ``(rows, features + 1)``; the last column is the base value."""
        ...


class _LightGBMTrees:
    """LightGBM's Booster from its text file (``mlflow.lightgbm``), one thread per call."""

    def __init__(self, model_dir: Path) -> None:
        import lightgbm as lgb

        self.booster = lgb.Booster(model_file=str(model_dir / "model.lgb"))

    def feature_names(self) -> list[str]:
        return list(self.booster.feature_name())

    def predict(self, rows: np.ndarray, threads: int = 1) -> np.ndarray:
        return np.asarray(self.booster.predict(rows, num_threads=threads), dtype=float)

    def contributions(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(rows, pred_contrib=True, num_threads=1))


class _XGBoostTrees:
    """XGBoost's Booster from the file ``mlflow.xgboost`` logged (UBJ), one thread per call.

    Its feature types (categorical codes marked 'c') travel in the file.
    """

    def __init__(self, model_dir: Path) -> None:
        import xgboost as xgb
        import yaml

        flavor = yaml.safe_load((model_dir / "MLmodel").read_text())["flavors"].get("xgboost")
        if flavor is None:
            raise ValueError(f"{model_dir} holds no XGBoost model; rebuild with `make build`.")
        self._xgb = xgb
        self.booster = xgb.Booster(model_file=str(model_dir / flavor["data"]))
        # One request is one row: threads would cost more than they save, and the workers
        # of the service already share the cores.
        self.booster.set_param({"nthread": 1})

    def feature_names(self) -> list[str]:
        return list(self.booster.feature_names or [])

    def predict(self, rows: np.ndarray, threads: int = 1) -> np.ndarray:
        if threads != 1:  # a batch: the booster's threads for this call only
            self.booster.set_param({"nthread": threads})
        try:
            return np.asarray(self.booster.inplace_predict(rows), dtype=float)
        finally:
            if threads != 1:
                self.booster.set_param({"nthread": 1})

    def contributions(self, rows: np.ndarray) -> np.ndarray:
        matrix = self._xgb.DMatrix(
            rows,
            feature_names=self.booster.feature_names,
            feature_types=self.booster.feature_types,
            enable_categorical=True,
            nthread=1,
        )
        return np.asarray(self.booster.predict(matrix, pred_contribs=True), dtype=float)


def load_skops_model(model_dir: Path) -> Any:
    """A scikit-learn model that MLflow logged in skops format, without MLflow.

    Only the skops format is accepted (no pickle): its allow-list of types is the one logged
    with the model in the MLmodel file.
    """
    import skops.io
    import yaml

    flavor = yaml.safe_load((model_dir / "MLmodel").read_text())["flavors"]["sklearn"]
    if flavor.get("serialization_format") != "skops":
        raise ValueError(
            f"{model_dir} holds a {flavor.get('serialization_format')!r} model; the service "
            "loads scikit-learn models in the skops format only (no pickled code)."
        )
    trusted = flavor.get("skops_trusted_types") or []
    return skops.io.load(model_dir / flavor["pickled_model"], trusted=trusted)


def _format(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
