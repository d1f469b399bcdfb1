"""Ingestion wiring: one node for the main table, one per secondary table of the contract."""

from functools import partial, update_wrapper

from kedro.pipeline import Node, Pipeline

from credit_scoring.core.contract import DataContract

from .nodes import ingest_applications, ingest_secondary_table


def _outputs(table: str) -> dict[str, str]:
    return {
        "valid": f"{table}_validated",
        "quarantine": f"{table}_quarantine",
        "report": f"{table}_validation_report",
    }


def create_pipeline(contract: DataContract) -> Pipeline:
    nodes = [
        Node(
            func=ingest_applications,
            inputs={
                "applications": "applications_raw",
                "pseudonymisation_key": "pseudonymisation_key",
                "data_contract": "params:data_contract",
                "params": "params:data_ingestion",
            },
            outputs=_outputs("applications"),
            name="ingest_applications_node",
        )
    ]
    for table, spec in contract.secondary_tables.items():
        func = update_wrapper(
            partial(ingest_secondary_table, table_name=table), ingest_secondary_table
        )
        nodes.append(
            Node(
                func=func,
                inputs={
                    "table": spec.dataset,
                    "pseudonymisation_key": "pseudonymisation_key",
                    "data_contract": "params:data_contract",
                    "params": "params:data_ingestion",
                },
                outputs=_outputs(table),
                name=f"ingest_{table}_node",
            )
        )
    return Pipeline(nodes, tags="data_ingestion")
