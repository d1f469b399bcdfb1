"""Processing wiring: clean, build features, aggregate secondary tables, impute."""

from functools import partial, update_wrapper

from kedro.pipeline import Node, Pipeline

from credit_scoring.core.contract import DataContract

from .nodes import (
    aggregate_table,
    assign_splits,
    build_client_features,
    build_features,
    deduplicate_rows,
    drop_duplicate_columns,
    drop_irrelevant_columns,
    impute_missing_values,
    summarise_processing,
    treat_anomalies,
    treat_outliers,
)

CONTRACT = "params:data_contract"
PARAMS = "params:data_processing"


def _aggregation_nodes(contract: DataContract) -> list[Node]:
    nodes = []
    for table in contract.secondary_tables:
        func = update_wrapper(partial(aggregate_table, table_name=table), aggregate_table)
        nodes.append(
            Node(
                func=func,
                inputs={"table": f"{table}_validated", "data_contract": CONTRACT, "params": PARAMS},
                outputs=f"{table}_aggregates",
                name=f"aggregate_{table}_node",
            )
        )
    return nodes


def _client_feature_nodes(contract: DataContract, aggregates: dict[str, str]) -> list[Node]:
    """The client feature store (GET /clients/{id}/score) exists only when clients have an id."""
    if contract.id_column is None:
        return []
    return [
        Node(
            func=build_client_features,
            inputs={
                "applications": "applications_validated",
                "data_contract": CONTRACT,
                "params": PARAMS,
                **aggregates,
            },
            outputs="client_features",
            name="build_client_features_node",
        )
    ]


def create_pipeline(contract: DataContract) -> Pipeline:
    aggregates = {table: f"{table}_aggregates" for table in contract.secondary_tables}
    nodes = [
        Node(
            func=deduplicate_rows,
            inputs="applications_validated",
            outputs="applications_deduplicated",
            name="deduplicate_rows_node",
        ),
        Node(
            func=assign_splits,
            inputs={
                "applications": "applications_deduplicated",
                "data_contract": CONTRACT,
                "params": PARAMS,
            },
            outputs="applications_split",
            name="assign_splits_node",
        ),
        Node(
            func=drop_duplicate_columns,
            inputs="applications_split",
            outputs={"table": "applications_unique_columns", "dropped": "duplicate_columns"},
            name="drop_duplicate_columns_node",
        ),
        Node(
            func=treat_anomalies,
            inputs=["applications_unique_columns", PARAMS],
            outputs="applications_anomalies_flagged",
            name="treat_anomalies_node",
        ),
        Node(
            func=treat_outliers,
            inputs=["applications_anomalies_flagged", PARAMS],
            outputs={"table": "applications_cleaned", "bounds": "outlier_bounds"},
            name="treat_outliers_node",
        ),
        *_aggregation_nodes(contract),
        Node(
            func=build_features,
            inputs={
                "applications": "applications_cleaned",
                "data_contract": CONTRACT,
                "params": PARAMS,
                **aggregates,
            },
            outputs="applications_features",
            name="build_features_node",
        ),
        Node(
            func=drop_irrelevant_columns,
            inputs=["applications_features", CONTRACT, PARAMS],
            outputs={"table": "applications_primary", "dropped": "irrelevant_columns"},
            name="drop_irrelevant_columns_node",
        ),
        Node(
            func=impute_missing_values,
            inputs=["applications_primary", CONTRACT, PARAMS],
            outputs={"table": "model_input_table", "groups": "imputation_groups"},
            name="impute_missing_values_node",
        ),
        *_client_feature_nodes(contract, aggregates),
        Node(
            func=summarise_processing,
            inputs={
                "validated": "applications_validated",
                "model_input": "model_input_table",
                "duplicate_columns": "duplicate_columns",
                "outlier_bounds": "outlier_bounds",
                "irrelevant_columns": "irrelevant_columns",
                "imputation_groups": "imputation_groups",
            },
            outputs="processing_report",
            name="summarise_processing_node",
        ),
    ]
    return Pipeline(nodes, tags="data_processing")
