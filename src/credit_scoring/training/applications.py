"""The generator's population as the scoring API's request bodies: what the traffic simulator
and the deployment smoke test send (the contract's columns and the secondary aggregates)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from credit_scoring.config.loader import project_parameters
from credit_scoring.config.synthetic import SyntheticParams
from credit_scoring.core.contract import load_contract
from credit_scoring.core.features import aggregate_secondary, join_aggregates
from credit_scoring.core.processing import load_processing
from credit_scoring.core.spec import aggregate_columns, json_records
from credit_scoring.training.synthetic import generate


def population(
    project: Path, n: int, seed: int, drift: bool
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """``n`` request bodies of the generator's population, as the project's API expects them
    (the contract's columns and the secondary aggregates), and their true outcomes
    (1 = will default): what the traffic simulator and the smoke test send."""
    params = project_parameters(conf_source=project / "conf")
    contract = load_contract(params["data_contract"])
    spec = load_processing(params["data_processing"]).feature_spec()
    tables = generate(
        SyntheticParams(
            n_applications=n,
            seed=seed,
            drift=drift,
            duplicate_fraction=0.0,
            invalid_fraction=0.0,
            outlier_fraction=0.0,
        )
    )
    apps = tables["application_train"]
    key = contract.id_column or "SK_ID_CURR"
    for name, aggregation in spec.secondary_aggregations.items():
        secondary = tables.get(name)
        if secondary is None:
            continue
        aggregates = aggregate_secondary(secondary, key, aggregation, name)
        count = (
            f"{aggregation.prefix}{aggregation.count_column}" if aggregation.count_column else None
        )
        apps = join_aggregates(apps, aggregates, key, count)
    columns = [*contract.columns, *aggregate_columns(spec)]
    target = contract.target.column if contract.target else "TARGET"
    return json_records(apps, columns), apps[target].to_numpy()
