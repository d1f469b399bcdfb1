"""XGBoost candidates: trained in this process or across the Spark executors, kept as the
native ``Booster`` either way.

Both read the same model input as LightGBM (category codes from ``core.encoding``, NaN for
missing), marked as categorical features (``feature_types`` 'c'), and take the monotone
constraints of ``data_science.monotone_increasing``. The fitted model is the booster alone:
what MLflow logs in XGBoost's own format (UBJ) and the service loads, without Spark.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xgboost as xgb

from credit_scoring.config.data_science import PARAMS_FILE, Candidate
from credit_scoring.core.errors import ContractError
from credit_scoring.engines.spark import active_session, task_slots

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

logger = logging.getLogger(__name__)

LABEL_COLUMN = "__label__"  # the target's column in the Spark frame (no feature is named so)


def check_num_workers(name: str, num_workers: int, slots: int) -> None:
    """SparkXGBClassifier waits for ``num_workers`` concurrent tasks (a barrier stage): with
    fewer slots it waits forever instead of failing, so refuse it here."""
    if num_workers > slots:
        raise ContractError(
            f"data_science.candidates.{name}.spark.num_workers = {num_workers}, but the Spark "
            f"session runs only {slots} task(s) at once: XGBoost would wait for the missing "
            f"slots forever. Set num_workers <= {slots} (conf/spark/parameters_data_science.yml)"
            ", or give Spark more cores (spark.master local[N] or more executors in "
            "conf/spark/spark.yml)."
        )


def check_spark_candidate(name: str, candidate: Candidate) -> None:
    """A candidate that trains on Spark has a session with enough task slots (else an error
    naming the setting and the fix, in seconds rather than a hang)."""
    if candidate.spark is not None:
        session = active_session(f"data_science.candidates.{name} (spark:)")
        check_num_workers(name, candidate.spark.num_workers, task_slots(session))


class XGBoostClassifier:
    """An XGBoost binary classifier with ``fit`` / ``predict_proba`` on model-input frames.

    ``params`` are ``xgboost.XGBClassifier``'s (``n_estimators``, ``learning_rate``,
    ``max_depth``, ``monotone_constraints`` ...), which ``SparkXGBClassifier`` takes too.
    With ``num_workers`` the fit runs on the process's Spark session.
    """

    def __init__(
        self,
        params: dict[str, Any],
        categorical: list[str],
        num_workers: int | None = None,
        name: str = "xgboost",
    ) -> None:
        self.params = dict(params)
        self.categorical = list(categorical)
        self.num_workers = num_workers
        self.name = name
        self.booster_: xgb.Booster | None = None

    @classmethod
    def from_booster(cls, booster: xgb.Booster) -> XGBoostClassifier:
        """A fitted classifier around a loaded booster."""
        types = booster.feature_types or []
        names = booster.feature_names or []
        model = cls({}, [n for n, t in zip(names, types, strict=True) if t == "c"])
        model.booster_ = booster
        return model

    def _feature_types(self, columns: list[str]) -> list[str]:
        return ["c" if c in self.categorical else "q" for c in columns]

    def fit(self, x: pd.DataFrame, y: np.ndarray) -> XGBoostClassifier:
        columns = [str(c) for c in x.columns]
        if self.num_workers is None:
            local = xgb.XGBClassifier(
                **self.params, feature_types=self._feature_types(columns), enable_categorical=True
            )
            local.fit(x.to_numpy(dtype=np.float64), np.asarray(y))
            booster = local.get_booster()
        else:
            booster = self._fit_on_spark(active_session(f"candidate {self.name}"), x, y)
        booster.feature_names = columns
        self.booster_ = booster
        return self

    def _fit_on_spark(self, spark: SparkSession, x: pd.DataFrame, y: np.ndarray) -> xgb.Booster:
        from xgboost.spark import SparkXGBClassifier

        assert self.num_workers is not None
        check_num_workers(self.name, self.num_workers, task_slots(spark))
        columns = [str(c) for c in x.columns]
        # The rows as pandas read them from the catalog, handed to Spark through Arrow.
        frame = spark.createDataFrame(x.astype("float64").assign(**{LABEL_COLUMN: np.asarray(y)}))
        estimator = SparkXGBClassifier(
            features_col=columns,
            label_col=LABEL_COLUMN,
            num_workers=self.num_workers,
            feature_types=self._feature_types(columns),
            verbose=False,  # no log-loss line per tree and per worker
            **self.params,
        )
        logger.info("XGBoost on %d Spark workers, %d rows", self.num_workers, len(x))
        return estimator.fit(frame).get_booster()

    def predict_proba(self, x: pd.DataFrame) -> np.ndarray:
        booster = self._fitted()
        if booster.feature_names and list(x.columns) != booster.feature_names:
            raise ValueError(
                f"XGBoost model expects columns {booster.feature_names}, got {list(x.columns)}"
            )
        positive = np.asarray(booster.inplace_predict(x.to_numpy(dtype=np.float64)), dtype=float)
        return np.column_stack([1.0 - positive, positive])

    def contributions(self, x: pd.DataFrame) -> np.ndarray:
        """Exact TreeSHAP in log-odds, ``(rows, features + 1)``: the last column is the base."""
        booster = self._fitted()
        matrix = xgb.DMatrix(
            x.to_numpy(dtype=np.float64),
            feature_names=booster.feature_names,
            feature_types=booster.feature_types,
            enable_categorical=True,
        )
        return np.asarray(booster.predict(matrix, pred_contribs=True), dtype=float)

    def _fitted(self) -> xgb.Booster:
        if self.booster_ is None:
            raise ValueError(f"{self.name}: fit the model first ({PARAMS_FILE} declares it)")
        return self.booster_
