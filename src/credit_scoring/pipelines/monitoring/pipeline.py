"""Monitoring wiring: window -> reference of its version -> drift + performance -> publish."""

from kedro.pipeline import Node, Pipeline

from .nodes import extract_drift_report, fetch_reference, measure, publish, read_events

PARAMS = "params:monitoring"


def create_pipeline(**kwargs: object) -> Pipeline:
    return Pipeline(
        [
            Node(
                read_events,
                inputs=["serving_database", PARAMS],
                outputs="monitoring_window",
                name="read_events_node",
            ),
            Node(
                fetch_reference,
                inputs=["monitoring_window", PARAMS],
                outputs="monitoring_reference",
                name="fetch_reference_node",
            ),
            Node(
                measure,
                inputs=[
                    "monitoring_window",
                    "monitoring_reference",
                    PARAMS,
                    "params:data_science",
                ],
                outputs="monitoring_measured",
                name="measure_drift_and_performance_node",
            ),
            Node(
                publish,
                inputs=["monitoring_measured", PARAMS],
                outputs="monitoring_summary",
                name="publish_monitoring_node",
            ),
            Node(
                extract_drift_report,
                inputs="monitoring_measured",
                outputs="monitoring_report",
                name="write_drift_report_node",
            ),
        ],
        tags="monitoring",
    )
