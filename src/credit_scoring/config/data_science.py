"""``data_science`` in ``conf/base/parameters_data_science.yml``: candidates, search, cost,
selection, explanations and the registry gate. Every key is checked."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from credit_scoring.core.encoding import ModelKind
from credit_scoring.core.schema import Strict

PARAMS_FILE = "conf/base/parameters_data_science.yml"


class Distribution(Strict):
    """One hyperparameter's range: float (optionally log-scale) or int."""

    low: float
    high: float
    log: bool = False
    int: bool = False

    @model_validator(mode="after")
    def _check(self) -> Distribution:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log-scale range needs low > 0")
        return self


class Search(Strict):
    n_trials: int = Field(10, ge=1)
    timeout_s: float = Field(120.0, gt=0)
    space: dict[str, Distribution] = Field(default_factory=dict)


class SparkTraining(Strict):
    """Train across the Spark executors (``xgboost.spark.SparkXGBClassifier``)."""

    num_workers: int = Field(
        2,
        ge=1,
        description="XGBoost workers, one Spark task each; at most the session's task slots "
        "(cores / spark.task.cpus), else training would wait for slots forever",
    )


class Candidate(Strict):
    kind: ModelKind
    fixed: dict[str, Any] = Field(default_factory=dict)
    search: Search | None = None
    class_weight: Literal["balanced", "none"] = "balanced"
    spark: SparkTraining | None = Field(
        None,
        description="xgboost only: train on the Spark session of `kedro run --env spark` "
        "instead of this process",
    )

    @model_validator(mode="after")
    def _spark_is_for_xgboost(self) -> Candidate:
        if self.spark is not None and self.kind != "xgboost":
            raise ValueError(
                f"`spark` trains XGBoost across Spark executors; kind {self.kind!r} trains in "
                "this process: remove `spark` or use kind: xgboost"
            )
        return self


class CostParams(Strict):
    false_negative: float = Field(10.0, ge=0)
    false_positive: float = Field(1.0, ge=0)


class LeakageParams(Strict):
    max_single_feature_auc: float = Field(0.85, gt=0.5, le=1.0)
    action: Literal["fail", "warn"] = "fail"


class CoefficientPath(Strict):
    low: float = Field(1e-4, gt=0)
    high: float = Field(10.0, gt=0)
    steps: int = Field(12, ge=2)
    top_features: int = Field(12, ge=1)


class ExplanationParams(Strict):
    sample_size: int = Field(1000, ge=10)
    examples: int = Field(3, ge=1)
    permutation_repeats: int = Field(3, ge=1)
    coefficient_path: CoefficientPath = Field(default_factory=lambda: CoefficientPath())


class SelectionParams(Strict):
    """How the candidates are compared: on the validation split, or on their out-of-fold
    cross-validation scores (steadier when there are few rows)."""

    mode: Literal["auto", "validation", "cross_validation"] = "auto"
    cross_validation_below_rows: int = Field(
        5000, ge=0, description="auto: cross-validation below this many train+validation rows"
    )


class RegistryParams(Strict):
    model_name: str = "credit_scoring"
    auc_tolerance: float = Field(0.005, ge=0)
    reference_rows: int = Field(
        20_000,
        ge=100,
        description="held-out rows (model features + score) logged with the version as the "
        "reference the monitoring pipeline compares production traffic with",
    )


class DataScienceParams(Strict):
    """``data_science`` in ``parameters_data_science.yml``: every key is checked."""

    random_state: int = 42
    leakage: LeakageParams = Field(default_factory=lambda: LeakageParams())
    cost: CostParams = Field(default_factory=lambda: CostParams())
    fbeta_beta: float = Field(3.0, gt=0)
    cv_folds: int = Field(3, ge=2)
    monotone_increasing: list[str] = Field(
        default_factory=list, description="features that may only raise the risk"
    )
    candidates: dict[str, Candidate]
    explanations: ExplanationParams = Field(default_factory=lambda: ExplanationParams())
    selection: SelectionParams = Field(default_factory=lambda: SelectionParams())
    registry: RegistryParams = Field(default_factory=lambda: RegistryParams())

    @model_validator(mode="after")
    def _needs_dummy(self) -> DataScienceParams:
        if not any(c.kind == "dummy" for c in self.candidates.values()):
            raise ValueError(
                "candidates need a 'dummy' baseline (kind: dummy): the gate compares to it"
            )
        return self
