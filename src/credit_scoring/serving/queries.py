"""Query strings of the advisor routes (client search, comparison groups): parsed and checked
against the data contract, with a 422 naming the parameter when they are wrong.

Filters: ``eq:<COLUMN>=<category>`` (repeat it for several categories), ``min:<COLUMN>=<n>``
and ``max:<COLUMN>=<n>`` on numeric columns, ``client_id_prefix=<hex>``. Only the contract's
columns that are not marked ``sensitive`` can be filtered on or listed: an advisor compares a
client with others by what the loan is about, not by a protected attribute.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

from credit_scoring.core.contract import DataContract
from credit_scoring.storage.clients import Filter

PAGE_SIZE = 20
PAGE_LIMIT = 50
MAX_OFFSET = 10_000_000
SAMPLE_SIZE = 500
SAMPLE_LIMIT = 2000
MAX_LISTED_COLUMNS = 8
MAX_FEATURES = 4
DEFAULT_LISTED_COLUMNS = 4
PREFIX_PATTERN = r"^[0-9a-f]{1,64}$"
_PREFIX = re.compile(PREFIX_PATTERN)


class QueryError(ValueError):
    """A wrong query parameter: ``errors`` in the API's 422 format."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors

    def body(self) -> dict[str, Any]:
        fields = ", ".join(e["field"] for e in self.errors[:5])
        return {
            "error": f"{len(self.errors)} invalid query parameter(s): {fields}. Fix them as each "
            "message says.",
            "errors": self.errors,
        }


@dataclass
class Columns:
    """The columns an advisor may filter on and see, from the contract."""

    id_column: str
    numeric: list[str]
    categories: dict[str, list[str]]

    @classmethod
    def of(cls, contract: DataContract) -> Columns:
        numeric, categories = [], {}
        for name, column in contract.columns.items():
            if column.sensitive:
                continue
            if column.dtype == "category":
                categories[name] = [str(v) for v in column.allowed or []]
            elif column.dtype in ("float", "int"):
                numeric.append(name)
        return cls(contract.pseudonymised_id_column, numeric, categories)

    @property
    def all(self) -> list[str]:
        return [*self.categories, *self.numeric]


def _problem(name: str, rule: str, message: str) -> dict[str, str]:
    return {"field": f"query.{name}", "rule": rule, "message": message}


def _int(params: Any, name: str, default: int, low: int, high: int, errors: list) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        errors.append(_problem(name, "int_parsing", f"a whole number from {low} to {high}"))
        return default
    if not low <= value <= high:
        errors.append(_problem(name, "range", f"a whole number from {low} to {high}"))
    return value


def parse_filters(params: Any, columns: Columns, extra: set[str]) -> list[Filter]:
    """The filters of a query string; raises QueryError listing every wrong parameter."""
    filters: list[Filter] = []
    errors: list[dict[str, str]] = []
    for key in sorted(set(params.keys())):
        values = params.getlist(key)
        if key in extra:
            continue
        if key == "client_id_prefix":
            value = values[-1].lower()
            if not _PREFIX.match(value):
                errors.append(_problem(key, "pattern", "1 to 64 hexadecimal characters"))
            else:
                filters.append((columns.id_column, "prefix", value))
            continue
        op, _, column = key.partition(":")
        if op == "eq" and column in columns.categories:
            allowed = columns.categories[column]
            wrong = [v for v in values if v not in allowed]
            if wrong:
                errors.append(_problem(key, "enum", f"one of {allowed}"))
            else:
                filters.append((column, "eq", values))
        elif op in ("min", "max") and column in columns.numeric:
            try:
                number = float(values[-1])
            except ValueError:
                number = math.nan
            if not math.isfinite(number):
                errors.append(_problem(key, "float_parsing", "a finite number"))
            else:
                filters.append((column, "ge" if op == "min" else "le", number))
        else:
            errors.append(
                _problem(
                    key,
                    "unknown_parameter",
                    f"filters are eq:<COLUMN> for {sorted(columns.categories)}, min:<COLUMN> "
                    f"and max:<COLUMN> for {sorted(columns.numeric)}, and client_id_prefix",
                )
            )
    if errors:
        raise QueryError(errors)
    return filters


def _columns(params: Any, name: str, columns: Columns, most: int, errors: list) -> list[str]:
    chosen = params.getlist(name)
    wrong = [c for c in chosen if c not in columns.all]
    if wrong:
        errors.append(_problem(name, "enum", f"columns among {columns.all}"))
    if len(chosen) > most:
        errors.append(_problem(name, "too_long", f"at most {most} columns"))
    return list(dict.fromkeys(c for c in chosen if c in columns.all))[:most]  # once each


@dataclass
class Search:
    filters: list[Filter]
    columns: list[str]
    limit: int
    offset: int


def parse_search(params: Any, columns: Columns) -> Search:
    errors: list[dict[str, str]] = []
    try:
        filters = parse_filters(params, columns, {"limit", "offset", "columns"})
    except QueryError as exc:
        errors += exc.errors
        filters = []
    limit = _int(params, "limit", PAGE_SIZE, 1, PAGE_LIMIT, errors)
    offset = _int(params, "offset", 0, 0, MAX_OFFSET, errors)
    listed = _columns(params, "columns", columns, MAX_LISTED_COLUMNS, errors)
    if errors:
        raise QueryError(errors)
    default = [*list(columns.categories)[:1], *columns.numeric[: DEFAULT_LISTED_COLUMNS - 1]]
    return Search(filters, listed or default, limit, offset)


@dataclass
class Population:
    filters: list[Filter]
    features: list[str]
    size: int


def parse_population(params: Any, columns: Columns) -> Population:
    errors: list[dict[str, str]] = []
    try:
        filters = parse_filters(params, columns, {"features", "sample"})
    except QueryError as exc:
        errors += exc.errors
        filters = []
    features = _columns(params, "features", columns, MAX_FEATURES, errors)
    if not features and not errors:
        errors.append(_problem("features", "missing", "give 1 to 4 columns to compare"))
    size = _int(params, "sample", SAMPLE_SIZE, 1, SAMPLE_LIMIT, errors)
    if errors:
        raise QueryError(errors)
    return Population(filters, features, size)


def query_models(columns: Columns) -> tuple[type[BaseModel], type[BaseModel]]:
    """The typed query parameters of the search and of the comparison group, which the
    OpenAPI document is generated from (same defaults and bounds as the parsers above, which
    give the API's own 422 errors). The filters are not in them: their names carry a column.
    """
    column: Any = Literal[tuple(columns.all)] if columns.all else str
    prefix: Any = (
        str | None,
        Field(None, pattern=PREFIX_PATTERN, description="the start of a pseudonymised id"),
    )
    search = create_model(
        "SearchQuery",
        client_id_prefix=prefix,
        limit=(int, Field(PAGE_SIZE, ge=1, le=PAGE_LIMIT, description="clients per page")),
        offset=(int, Field(0, ge=0, le=MAX_OFFSET, description="clients skipped")),
        columns=(
            list[column],
            Field(
                default_factory=list,
                max_length=MAX_LISTED_COLUMNS,
                description="columns listed (default: a few)",
            ),
        ),
    )
    population = create_model(
        "PopulationQuery",
        client_id_prefix=prefix,
        features=(
            list[column],
            Field(min_length=1, max_length=MAX_FEATURES, description="1 to 4 columns to compare"),
        ),
        sample=(int, Field(SAMPLE_SIZE, ge=1, le=SAMPLE_LIMIT, description="largest sample")),
    )
    return search, population
