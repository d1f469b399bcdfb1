"""Ingestion: keep only contracted columns, pseudonymise ids, validate every row.

On the Spark engine the raw table is read as text and the very same pandas steps (the keyed
HMAC, the pandera schema, the quarantine with reasons) run batch by batch in the executors
(``engines.batches``), each batch parsed as pandas reads the CSV file.
"""

from __future__ import annotations

import io
import logging
from collections import Counter
from functools import partial
from typing import Any

import narwhals as nw
import pandas as pd

from credit_scoring.config.ingestion import PARAMS_FILE, IngestionParams
from credit_scoring.core.contract import ColumnSpec, DataContract, TargetSpec
from credit_scoring.core.errors import ContractError
from credit_scoring.core.frames import ROW_ORDER, lazy
from credit_scoring.engines.batches import is_spark, map_batches, with_row_order
from credit_scoring.training.privacy import pseudonymise_series
from credit_scoring.training.validation import build_schema, describe_failures, validate_frame

logger = logging.getLogger(__name__)

REASON_COLUMN = "_rejection_reason"
RULES_COLUMN = "_rules"  # Spark: the failed rules of a quarantined row, for the report


def minimise_columns(table: Any, keep: list[str], table_name: str) -> Any:
    """Return only the whitelisted columns (data minimisation); log what was dropped."""
    dropped = [c for c in table.columns if c not in keep]
    if dropped:
        logger.info("%s: %d column(s) not in the data contract dropped", table_name, len(dropped))
    kept = [c for c in table.columns if c in keep]
    return table.select(*kept) if is_spark(table) else table[kept].copy()


def pseudonymise_ids(
    table: pd.DataFrame, key: str, id_column: str | None, out_column: str
) -> pd.DataFrame:
    """Replace the raw id column by its keyed HMAC, or number the rows when there is no id."""
    out = table.copy()
    if id_column is None:
        out.insert(0, out_column, [f"row-{i}" for i in range(len(out))])
        return out
    if id_column not in out.columns:
        raise ContractError(
            f"The id column '{id_column}' named by data_contract.id_column is missing; "
            "fix the source or the contract (id_column: null when there is none)."
        )
    pseudonyms = pseudonymise_series(out.pop(id_column), key)
    out.insert(0, out_column, pseudonyms)
    return out


def _encode_target(valid: pd.DataFrame, target: TargetSpec | None) -> pd.DataFrame:
    if target is None:
        return valid
    out = valid.copy()
    out[target.column] = (out[target.column] == str(target.positive)).astype("int8")
    return out


def _as_text(frame: pd.DataFrame) -> pd.DataFrame:
    # Invalid rows can hold anything (text in a number column): store them as text.
    return frame.astype("string").astype(object).where(frame.notna(), None)


def validate_table(
    table: pd.DataFrame,
    columns: dict[str, ColumnSpec],
    id_column: str | None,
    target: TargetSpec | None,
    params: IngestionParams,
    table_name: str,
) -> dict[str, Any]:
    """Validate every row against the contract; fail or quarantine the invalid ones.

    Returns the valid rows (typed, target encoded 0/1), the quarantined rows with
    ``_rejection_reason``, and a report of counts by rule.
    """
    schema = build_schema(columns, id_column=id_column, target=target, name=table_name)
    outcome = validate_frame(table, schema)
    n_in, n_bad = len(table), len(outcome.invalid)
    _check_ratio(n_in, n_bad, params, lambda: describe_failures(outcome, table_name))
    if n_bad:
        logger.warning("%s: %d of %d row(s) quarantined", table_name, n_bad, n_in)
    report = {"table": table_name, "on_invalid": params.on_invalid, **outcome.summary()}
    report["columns"] = [c for c in outcome.valid.columns]
    return {
        "valid": _encode_target(outcome.valid, target).reset_index(drop=True),
        "quarantine": _as_text(outcome.invalid).reset_index(drop=True),
        "report": report,
    }


def _check_ratio(n_in: int, n_bad: int, params: IngestionParams, describe: Any) -> None:
    fix = f"(set data_ingestion.on_invalid in {PARAMS_FILE}, or fix the source data)"
    if n_bad and params.on_invalid == "fail":
        raise ContractError(describe() + f"\n{fix}")
    if n_in and n_bad / n_in > params.max_invalid_fraction:
        raise ContractError(
            describe() + f"\n{n_bad / n_in:.1%} of the rows are invalid, above "
            f"data_ingestion.max_invalid_fraction={params.max_invalid_fraction} {fix}"
        )


def _as_read(batch: pd.DataFrame) -> pd.DataFrame:
    """A batch of text as pandas reads the CSV file (numbers parsed, blanks missing)."""
    return pd.read_csv(io.StringIO(batch.to_csv(index=False)))


TEXT_COLUMN = "_text"  # Spark: a quarantined row's values as text (JSON), typed ones null
_NULLABLE: dict[str, Any] = {
    "float": "float64",
    "int": "Int64",
    "bigint": "Int64",
    "int8": "Int8",
    "bool": "boolean",
}


def _ingest_batch(
    batch: pd.DataFrame,
    key: str,
    id_column: str | None,
    pseudonym: str,
    columns: dict[str, ColumnSpec],
    target: TargetSpec | None,
    table_name: str,
    kinds: dict[str, str],
) -> pd.DataFrame:
    """One batch through pseudonymisation and validation, in one pass: its valid rows (typed,
    target encoded) and its quarantined rows (their values as JSON text in ``_text``, with
    the reason and the failed rules), in one table of ``kinds`` + those three columns."""
    order = [*kinds, REASON_COLUMN, RULES_COLUMN, TEXT_COLUMN]
    if batch.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in order})
    if id_column is None:  # rows numbered by the table's order, not the batch's
        table = _as_read(batch)
        table.insert(0, pseudonym, "row-" + table[ROW_ORDER].astype(str))
    else:
        table = pseudonymise_ids(_as_read(batch), key, id_column, pseudonym)
    schema = build_schema(columns, id_column=pseudonym, target=target, name=table_name)
    outcome = validate_frame(table, schema)
    parts = [_encode_target(outcome.valid, target)]
    if not outcome.invalid.empty:
        invalid = outcome.invalid
        failures = outcome.failures
        rules = failures["column"].astype(str) + ": " + failures["check"].astype(str)
        by_row = failures.assign(rule=rules).groupby("index")["rule"].agg("\n".join)
        text = _as_text(invalid.drop(columns=[ROW_ORDER, REASON_COLUMN]))
        quarantined = pd.DataFrame(
            {
                ROW_ORDER: invalid[ROW_ORDER].to_numpy(),
                REASON_COLUMN: invalid[REASON_COLUMN].to_numpy(),
                RULES_COLUMN: by_row.reindex(invalid.index).to_numpy(),
                TEXT_COLUMN: text.to_json(orient="records", lines=True).splitlines(),
            }
        )
        parts.append(quarantined)
    out = pd.concat(parts, ignore_index=True).reindex(columns=order)
    for column in order:  # nullable types: a quarantined row's values are null
        kind = _NULLABLE.get(kinds.get(column, "str"))
        values = out[column]
        out[column] = (
            values.astype(kind) if kind else values.astype(object).where(values.notna(), None)
        )
    return out


def _validate_on_spark(
    table: Any,
    key: str,
    id_column: str | None,
    pseudonym: str,
    columns: dict[str, ColumnSpec],
    target: TargetSpec | None,
    params: IngestionParams,
    table_name: str,
) -> dict[str, Any]:
    """``validate_table`` on a Spark table of text: the same steps, batch by batch, once."""
    from pyspark.sql import functions as F

    source = with_row_order(table).to_native()
    present = [c for c in source.columns if c not in (id_column, ROW_ORDER)]
    missing = [c for c, spec in columns.items() if spec.required and c not in present]
    if missing:
        raise ContractError(
            f"Table '{table_name}' lacks column(s) {missing} required by the data contract. "
            "Add them to the source, or set `required: false` (or remove them) under "
            "data_contract in conf/base/parameters_data_contract.yml."
        )
    kinds = {c: columns[c].dtype if c in columns else "str" for c in present}
    if target:
        kinds[target.column] = "int8"
    valid_schema = {pseudonym: "str", **kinds, ROW_ORDER: "bigint"}
    checked_schema = {**valid_schema, REASON_COLUMN: "str", RULES_COLUMN: "str"}
    checked_schema[TEXT_COLUMN] = "str"
    run = partial(
        _ingest_batch,
        key=key,
        id_column=id_column,
        pseudonym=pseudonym,
        columns=columns,
        target=target,
        table_name=table_name,
        kinds=valid_schema,
    )
    # Kept once computed: counted here, then split and written (no second validation).
    checked = map_batches(source, run, schema=checked_schema).cache()
    is_valid = F.col(REASON_COLUMN).isNull()
    valid = checked.filter(is_valid).select(*valid_schema)
    text_fields = ", ".join(f"`{c}` string" for c in [pseudonym, *present])
    invalid = checked.filter(~is_valid).select(
        F.from_json(TEXT_COLUMN, text_fields).alias("_values"),
        ROW_ORDER,
        REASON_COLUMN,
        RULES_COLUMN,
    )
    invalid = invalid.select(
        *(F.col(f"_values.`{c}`").alias(c) for c in [pseudonym, *present]),
        ROW_ORDER,
        REASON_COLUMN,
        RULES_COLUMN,
    )
    by_rules = Counter(
        dict(lazy(checked).group_by(RULES_COLUMN).agg(nw.len().alias("n")).collect().rows())
    )
    n_valid = by_rules.pop(None, 0)
    n_bad = sum(by_rules.values())
    failures: Counter[str] = Counter()
    for rules, n in by_rules.items():
        for rule in rules.split("\n"):
            failures[rule] += n

    def describe() -> str:
        examples = [r[0] for r in invalid.select(REASON_COLUMN).limit(3).collect()]
        lines = [f"{n_bad} row(s) of '{table_name}' break the data contract:"]
        lines += [f"  - {rule}, {n} row(s)" for rule, n in sorted(failures.items())]
        return "\n".join(lines + [f"  e.g. {e}" for e in examples])

    _check_ratio(n_valid + n_bad, n_bad, params, describe)
    if n_bad:
        logger.warning("%s: %d of %d row(s) quarantined", table_name, n_bad, n_valid + n_bad)
    report = {
        "table": table_name,
        "on_invalid": params.on_invalid,
        "rows_in": n_valid + n_bad,
        "rows_valid": n_valid,
        "rows_invalid": n_bad,
        "failures_by_rule": dict(sorted(failures.items())),
        "columns": [c for c in valid_schema if c != ROW_ORDER],
    }
    return {"valid": valid, "quarantine": invalid.drop(RULES_COLUMN), "report": report}


def ingest_applications(
    applications: pd.DataFrame,
    pseudonymisation_key: str,
    data_contract: DataContract,
    params: IngestionParams,
) -> dict[str, Any]:
    """Minimise, pseudonymise and validate the main table (one row per application)."""
    target = data_contract.target
    keep = [c for c in (data_contract.id_column, target and target.column) if c]
    minimal = minimise_columns(applications, keep + data_contract.feature_columns, "applications")
    pseudonym = data_contract.pseudonymised_id_column
    if is_spark(minimal):
        return _validate_on_spark(
            minimal,
            pseudonymisation_key,
            data_contract.id_column,
            pseudonym,
            data_contract.columns,
            target,
            params,
            "applications",
        )
    pseudonymised = pseudonymise_ids(
        minimal, pseudonymisation_key, data_contract.id_column, pseudonym
    )
    return validate_table(
        pseudonymised, data_contract.columns, pseudonym, target, params, "applications"
    )


def ingest_secondary_table(
    table: pd.DataFrame,
    pseudonymisation_key: str,
    data_contract: DataContract,
    params: IngestionParams,
    table_name: str,
) -> dict[str, Any]:
    """Minimise, pseudonymise (same key as the main table) and validate a secondary table."""
    spec = data_contract.secondary_tables[table_name]
    pseudonym = data_contract.pseudonymised_id_column
    minimal = minimise_columns(table, [spec.key, *spec.columns], table_name)
    if is_spark(minimal):
        return _validate_on_spark(
            minimal,
            pseudonymisation_key,
            spec.key,
            pseudonym,
            spec.columns,
            None,
            params,
            table_name,
        )
    pseudonymised = pseudonymise_ids(minimal, pseudonymisation_key, spec.key, pseudonym)
    return validate_table(pseudonymised, spec.columns, pseudonym, None, params, table_name)
