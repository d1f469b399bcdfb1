"""The data contract: one declaration in ``conf/`` that the pipeline and the API both obey.

The contract (``data_contract`` in ``conf/base/parameters_data_contract.yml``) names the
columns, their types, bounds and allowed categories, the target and its labels, the id
column and the secondary tables. A fork edits that YAML, never this module: the pandera
schemas used at ingestion are built from it here, and so are the API's request models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd
import pandera.pandas as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

CONTRACT_FILE = "conf/base/parameters_data_contract.yml"

Scalar = str | int | float | bool
DType = Literal["float", "int", "category", "bool"]

_PANDAS_DTYPES: dict[str, str] = {
    "float": "float64",
    "int": "Int64",  # nullable: real tables have missing integers
    "category": "str",
    "bool": "boolean",
}


class ContractError(ValueError):
    """The data or the contract itself breaks a rule; the message says how to fix it."""


def config_error(exc: ValidationError, prefix: str, file: str) -> ContractError:
    """Turn a pydantic error on a YAML section into one message: each key, what is wrong, where."""
    problems = "; ".join(
        f"{'.'.join([prefix, *(str(p) for p in err['loc'])])}: {err['msg']}" for err in exc.errors()
    )
    return ContractError(f"{problems} (fix it in {file}, or in your environment's copy)")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnSpec(_Strict):
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

    @model_validator(mode="after")
    def _check_rules(self) -> ColumnSpec:
        if self.allowed is not None and self.dtype != "category":
            raise ValueError("'allowed' only applies to dtype 'category'")
        if (self.min is not None or self.max is not None) and self.dtype not in ("float", "int"):
            raise ValueError("'min'/'max' only apply to dtype 'float' or 'int'")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class TargetSpec(_Strict):
    """The label column and which of its values means 'defaulted'."""

    column: str
    positive: Scalar = 1
    negative: Scalar = 0


class SecondaryTableSpec(_Strict):
    """A table with several rows per client (e.g. bureau credits), aggregated per client."""

    dataset: str = Field(description="catalog key of the raw table")
    key: str = Field(description="column holding the client id, pseudonymised like the id")
    columns: dict[str, ColumnSpec]


class DataContract(_Strict):
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
    def categorical_columns(self) -> list[str]:
        return [name for name, spec in self.columns.items() if spec.dtype == "category"]

    @property
    def numeric_columns(self) -> list[str]:
        return [name for name, spec in self.columns.items() if spec.dtype in ("float", "int")]


def load_contract(raw: dict[str, Any] | DataContract) -> DataContract:
    """Build the contract from its YAML mapping; a mistake names the key and the file."""
    if isinstance(raw, DataContract):
        return raw
    try:
        return DataContract.model_validate(raw)
    except ValidationError as exc:
        raise config_error(exc, "data_contract", CONTRACT_FILE) from None


def _column_schema(name: str, spec: ColumnSpec) -> pa.Column:
    checks: list[pa.Check] = []
    if spec.min is not None:
        checks.append(pa.Check.ge(spec.min))
    if spec.max is not None:
        checks.append(pa.Check.le(spec.max))
    if spec.allowed is not None:
        checks.append(pa.Check.isin([str(v) for v in spec.allowed]))
    return pa.Column(
        _PANDAS_DTYPES[spec.dtype],
        checks=checks,
        nullable=spec.nullable,
        required=spec.required,
        coerce=True,
        description=spec.description or None,
    )


def build_schema(
    columns: dict[str, ColumnSpec],
    id_column: str | None = None,
    target: TargetSpec | None = None,
    name: str = "applications",
) -> pa.DataFrameSchema:
    """The pandera schema of a table: the contract's columns plus its id and target."""
    schema_columns = {col: _column_schema(col, spec) for col, spec in columns.items()}
    if id_column:
        schema_columns[id_column] = pa.Column("str", nullable=False, coerce=True)
    if target:
        labels = [str(target.negative), str(target.positive)]
        schema_columns[target.column] = pa.Column(
            "str", checks=[pa.Check.isin(labels)], nullable=False, coerce=True
        )
    return pa.DataFrameSchema(schema_columns, name=name, strict=False, coerce=True)


@dataclass
class ValidationOutcome:
    """Rows that passed, rows that did not (with the reason) and a summary for the report."""

    valid: pd.DataFrame
    invalid: pd.DataFrame
    failures: pd.DataFrame = field(default_factory=pd.DataFrame)

    def summary(self) -> dict[str, Any]:
        by_rule: dict[str, int] = {}
        if not self.failures.empty:
            counts = self.failures.groupby(["column", "check"]).size()
            by_rule = {f"{key[0]}: {key[1]}": int(n) for key, n in counts.items()}  # type: ignore[index]
        return {
            "rows_in": len(self.valid) + len(self.invalid),
            "rows_valid": len(self.valid),
            "rows_invalid": len(self.invalid),
            "failures_by_rule": by_rule,
        }


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


def _missing_required_columns(df: pd.DataFrame, schema: pa.DataFrameSchema) -> list[str]:
    return [n for n, col in schema.columns.items() if col.required and n not in df.columns]


def validate_frame(df: pd.DataFrame, schema: pa.DataFrameSchema) -> ValidationOutcome:
    """Validate every row; return the valid rows coerced to the contract's types.

    Row-level failures (bad value, out of bounds, unknown category, missing where not
    nullable, not convertible to the type) put the row aside with its reasons. A missing
    required column cannot be fixed row by row and raises ``ContractError``.
    """
    missing = _missing_required_columns(df, schema)
    if missing:
        raise ContractError(
            f"Table '{schema.name}' lacks column(s) {missing} required by the data contract. "
            f"Add them to the source, or set `required: false` (or remove them) under "
            f"data_contract in {CONTRACT_FILE}."
        )
    try:
        return ValidationOutcome(valid=schema.validate(df, lazy=True), invalid=df.iloc[0:0])
    except pa.errors.SchemaErrors as exc:
        failures = exc.failure_cases.copy()

    row_failures = failures[failures["index"].notna()].copy()
    table_failures = failures[failures["index"].isna()]
    if row_failures.empty and not table_failures.empty:
        raise ContractError(
            f"Table '{schema.name}' breaks the data contract: "
            + "; ".join(f"{r.column}: {r.check}" for r in table_failures.itertuples())
        )
    row_failures["index"] = row_failures["index"].astype(df.index.dtype)
    row_failures["reason"] = (
        row_failures["column"].astype(str)
        + ": "
        + row_failures["check"].astype(str)
        + " (value "
        + row_failures["failure_case"].astype(str)
        + ")"
    )
    reasons = row_failures.groupby("index")["reason"].agg("; ".join)
    invalid = df.loc[df.index.isin(reasons.index)].copy()
    invalid["_rejection_reason"] = reasons.reindex(invalid.index).to_numpy()
    # Second pass on the remaining rows: they convert and pass cleanly now.
    valid = schema.validate(df.loc[~df.index.isin(reasons.index)], lazy=True)
    return ValidationOutcome(
        valid=valid,
        invalid=invalid,
        failures=row_failures[["column", "check", "failure_case", "index"]],
    )


def describe_failures(outcome: ValidationOutcome, table: str, examples: int = 3) -> str:
    """A readable account of what failed: column, rule, example rows and values."""
    lines = [f"{len(outcome.invalid)} row(s) of '{table}' break the data contract:"]
    for (column, check), group in outcome.failures.groupby(["column", "check"]):
        sample = group.head(examples)
        shown = ", ".join(
            f"row {i} = {_show(v)}"
            for i, v in zip(sample["index"], sample["failure_case"], strict=True)
        )
        lines.append(f"  - {column}: {check}, {len(group)} row(s), e.g. {shown}")
    return "\n".join(lines)


def _show(value: Any) -> str:
    value = value.item() if hasattr(value, "item") else value
    return repr(value) if isinstance(value, str) else str(value)
