"""Batch scoring wiring: input table + champion -> scores -> Parquet, table, events."""

from kedro.pipeline import Node, Pipeline

from .nodes import build_prediction_events, score_clients, tabulate_scores

PARAMS = "params:batch_scoring"


def create_pipeline(**kwargs: object) -> Pipeline:
    return Pipeline(
        [
            Node(
                score_clients,
                inputs={
                    "clients": "batch_scoring_input",
                    "scorer": "champion_scorer",
                    "data_contract": "params:data_contract",
                    "params": PARAMS,
                },
                outputs="batch_scored",
                name="score_clients_node",
            ),
            Node(
                tabulate_scores,
                inputs="batch_scored",
                outputs={"file": "batch_scores", "table": "batch_scores_table"},
                name="tabulate_scores_node",
            ),
            Node(
                build_prediction_events,
                inputs=["batch_scored", PARAMS],
                outputs="batch_prediction_events",
                name="build_prediction_events_node",
            ),
        ],
        tags="batch_scoring",
    )
