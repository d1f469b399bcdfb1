"""The data contract: one declaration in ``conf/`` that the pipeline and the API both obey.

The contract (``data_contract`` in ``conf/base/parameters_data_contract.yml``) names the
columns, their types, bounds and allowed categories, the target and its labels, the id
column and the secondary tables. A fork edits that YAML, never this module: the pandera
schemas used at ingestion (``credit_scoring.training.validation``) and the API's request models (here)
are both built from it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from credit_scoring.core.errors import typed_section
from credit_scoring.core.schema import FrozenStrict

CONTRACT_FILE = "conf/base/parameters_data_contract.yml"

Scalar = str | int | float | bool
DType = Literal["float", "int", "category", "bool"]


class ColumnSpec(FrozenStrict):
    """One column: its type, whether it may be missing, its bounds or its categories."""

    dtype: DType
    nullable: bool = True
    required: bool = Field(
        default=True,
        description="false: the column is used when present (e.g. only in the synthetic data)",
    )
    min: float | None = None
    max: float | None = None
    allowed: list[Scalar] | None = None
    description: str = ""
    sensitive: bool = Field(
        default=False,
        description="a protected attribute (sex, age, ...): listed in the model card for review",
    )

    @model_validator(mode="after")
    def _check_rules(self) -> ColumnSpec:
        if self.allowed is not None and self.dtype != "category":
            raise ValueError("'allowed' only applies to dtype 'category'")
        if (self.min is not None or self.max is not None) and self.dtype not in ("float", "int"):
            raise ValueError("'min'/'max' only apply to dtype 'float' or 'int'")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class TargetSpec(FrozenStrict):
    """The label column and which of its values means 'defaulted'."""

    column: str
    positive: Scalar = 1
    negative: Scalar = 0


class SecondaryTableSpec(FrozenStrict):
    """A table with several rows per client (e.g. bureau credits), aggregated per client."""

    dataset: str = Field(description="catalog key of the raw table")
    key: str = Field(description="column holding the client id, pseudonymised like the id")
    columns: dict[str, ColumnSpec]


class DataContract(FrozenStrict):
    """The whole contract of the main (one row per application) table."""

    id_column: str | None = Field(description="raw client id, pseudonymised at ingestion")
    pseudonymised_id_column: str = "client_id"
    target: TargetSpec | None
    columns: dict[str, ColumnSpec]
    secondary_tables: dict[str, SecondaryTableSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_names(self) -> DataContract:
        if self.id_column and self.id_column in self.columns:
            raise ValueError(f"id column '{self.id_column}' must not also be listed in 'columns'")
        if self.target and self.target.column in self.columns:
            raise ValueError(f"target '{self.target.column}' must not also be listed in 'columns'")
        if self.secondary_tables and not self.id_column:
            raise ValueError("secondary_tables need an id_column to join on")
        return self

    @property
    def feature_columns(self) -> list[str]:
        return list(self.columns)

    @property
    def sensitive_columns(self) -> list[str]:
        return [name for name, spec in self.columns.items() if spec.sensitive]


def load_contract(raw: dict[str, Any] | DataContract) -> DataContract:
    """Build the contract from its YAML mapping; a mistake names the key and the file."""
    return typed_section(DataContract, raw, "data_contract", CONTRACT_FILE)


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_PYTHON_TYPES: dict[str, type] = {"float": float, "int": int, "bool": bool}


def _field(spec: ColumnSpec) -> tuple[Any, Any]:
    if spec.dtype == "category":
        allowed = tuple(str(v) for v in (spec.allowed or []))
        annotation: Any = Literal[allowed] if allowed else str
    else:
        annotation = _PYTHON_TYPES[spec.dtype]
    if spec.nullable or not spec.required:
        annotation = annotation | None
    default = None if (spec.nullable or not spec.required) else ...
    lower, upper = spec.min, spec.max
    if spec.dtype == "int":  # the pipeline stores integers as int64: larger ones cannot exist
        lower = INT64_MIN if lower is None else max(lower, INT64_MIN)
        upper = INT64_MAX if upper is None else min(upper, INT64_MAX)
    return annotation, Field(default, ge=lower, le=upper, description=spec.description or None)


def build_request_model(
    columns: dict[str, ColumnSpec],
    name: str = "Application",
    extra_fields: dict[str, tuple[Any, Any]] | None = None,
) -> type[BaseModel]:
    """A strict pydantic model of one row: the same types, bounds and categories as the schema.

    Unknown fields, NaN/inf, out-of-bounds values and unknown categories are refused, each
    error naming the field: the API's request models come from the contract, like pandera's.
    """
    fields = {column: _field(spec) for column, spec in columns.items()}
    fields.update(extra_fields or {})
    config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=False)
    return create_model(name, __config__=config, **fields)  # type: ignore[call-overload]
