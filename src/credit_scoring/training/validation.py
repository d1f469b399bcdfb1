"""Row validation at ingestion: pandera schemas built from the data contract (core.contract)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pandera.pandas as pa

from credit_scoring.core.contract import CONTRACT_FILE, ColumnSpec, TargetSpec
from credit_scoring.core.errors import ContractError

_PANDAS_DTYPES: dict[str, str] = {
    "float": "float64",
    "int": "Int64",  # nullable: real tables have missing integers
    "category": "str",
    "bool": "boolean",
}


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
