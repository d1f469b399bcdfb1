"""Ingestion: keep only contracted columns, pseudonymise ids, validate every row."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from credit_scoring.config.ingestion import PARAMS_FILE, IngestionParams
from credit_scoring.core.contract import ColumnSpec, DataContract, TargetSpec
from credit_scoring.core.errors import ContractError
from credit_scoring.training.privacy import pseudonymise_series
from credit_scoring.training.validation import build_schema, describe_failures, validate_frame

logger = logging.getLogger(__name__)

REASON_COLUMN = "_rejection_reason"


def minimise_columns(table: pd.DataFrame, keep: list[str], table_name: str) -> pd.DataFrame:
    """Return only the whitelisted columns (data minimisation); log what was dropped."""
    dropped = [c for c in table.columns if c not in keep]
    if dropped:
        logger.info("%s: %d column(s) not in the data contract dropped", table_name, len(dropped))
    return table[[c for c in table.columns if c in keep]].copy()


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
    fix = f"(set data_ingestion.on_invalid in {PARAMS_FILE}, or fix the source data)"
    if n_bad and params.on_invalid == "fail":
        raise ContractError(describe_failures(outcome, table_name) + f"\n{fix}")
    if n_in and n_bad / n_in > params.max_invalid_fraction:
        raise ContractError(
            describe_failures(outcome, table_name)
            + f"\n{n_bad / n_in:.1%} of the rows are invalid, above "
            f"data_ingestion.max_invalid_fraction={params.max_invalid_fraction} {fix}"
        )
    if n_bad:
        logger.warning("%s: %d of %d row(s) quarantined", table_name, n_bad, n_in)
    report = {"table": table_name, "on_invalid": params.on_invalid, **outcome.summary()}
    report["columns"] = [c for c in outcome.valid.columns]
    return {
        "valid": _encode_target(outcome.valid, target).reset_index(drop=True),
        "quarantine": _as_text(outcome.invalid).reset_index(drop=True),
        "report": report,
    }


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
    pseudonymised = pseudonymise_ids(minimal, pseudonymisation_key, spec.key, pseudonym)
    return validate_table(pseudonymised, spec.columns, pseudonym, None, params, table_name)
