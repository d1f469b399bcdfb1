"""Training wiring: split, leakage check, candidates, selection, evaluation, explanations, and
the registration (log, champion, gate, card, promote: the aliases move in the last node)."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    check_leakage,
    evaluate_model,
    explain_model,
    gate_model,
    log_model_version,
    plot_coefficient_path,
    promote_model,
    render_model_card,
    score_champion,
    select_model,
    split_data,
    train_candidates,
)

CONTRACT = "params:data_contract"
PARAMS = "params:data_science"
FIGURES = [
    "roc_curve",
    "precision_recall_curve",
    "confusion_matrix",
    "calibration_curve",
    "score_distribution",
]


def create_pipeline(**kwargs: object) -> Pipeline:
    return Pipeline(
        [
            Node(
                split_data,
                inputs=["applications_primary", CONTRACT],
                outputs={"train": "train_set", "validation": "validation_set", "test": "test_set"},
                name="split_data_node",
            ),
            Node(
                check_leakage,
                inputs=["train_set", CONTRACT, PARAMS],
                outputs="leakage_report",
                name="check_leakage_node",
            ),
            Node(
                train_candidates,
                inputs=["train_set", CONTRACT, "params:data_processing", PARAMS],
                outputs="candidate_models",
                name="train_candidates_node",
            ),
            Node(
                select_model,
                inputs=["candidate_models", "validation_set", CONTRACT, PARAMS],
                outputs={"selected": "selected_model", "comparison": "model_comparison"},
                name="select_model_node",
            ),
            Node(
                evaluate_model,
                inputs={
                    "selected": "selected_model",
                    "models": "candidate_models",
                    "test": "test_set",
                    "true_probabilities": "true_default_probability",
                    "pseudonymisation_key": "pseudonymisation_key",
                    "data_contract": CONTRACT,
                    "params": PARAMS,
                },
                outputs={
                    "metrics": "test_metrics",
                    "dummy_metrics": "dummy_test_metrics",
                    "mlflow_metrics": "test_metrics_mlflow",
                    **{name: f"{name}_plot" for name in FIGURES},
                },
                name="evaluate_model_node",
            ),
            Node(
                explain_model,
                inputs=["selected_model", "train_set", "test_set", CONTRACT, PARAMS],
                outputs={
                    "shap_importance": "shap_importance",
                    "permutation_importance": "permutation_importance",
                    "shap_summary": "shap_summary_plot",
                    "shap_importance_plot": "shap_importance_plot",
                    "shap_waterfalls": "shap_waterfalls_plot",
                },
                name="explain_model_node",
            ),
            Node(
                plot_coefficient_path,
                inputs=["candidate_models", "train_set", CONTRACT, PARAMS],
                outputs="coefficient_path_plot",
                name="plot_coefficient_path_node",
            ),
            Node(
                log_model_version,
                inputs={
                    "selected": "selected_model",
                    "test": "test_set",
                    "validation": "validation_set",
                    "outlier_bounds": "outlier_bounds",
                    "data_contract": CONTRACT,
                    "processing_params": "params:data_processing",
                    "params": PARAMS,
                },
                outputs={
                    "version": "model_version",
                    "reference": "monitoring_reference_sample",
                    "data_contract": "serving_data_contract",
                    "data_processing": "serving_data_processing",
                    "outlier_bounds": "serving_outlier_bounds",
                },
                name="log_model_version_node",
            ),
            Node(
                score_champion,
                inputs={"test": "test_set", "data_contract": CONTRACT, "params": PARAMS},
                outputs="champion_score",
                name="score_champion_node",
            ),
            Node(
                gate_model,
                inputs={
                    "test_metrics": "test_metrics",
                    "dummy_metrics": "dummy_test_metrics",
                    "champion": "champion_score",
                    "model_version": "model_version",
                    "params": PARAMS,
                },
                outputs={"decision": "gate_decision", "report": "gate_report"},
                name="gate_model_node",
            ),
            Node(
                render_model_card,
                inputs={
                    "selected": "selected_model",
                    "model_version": "model_version",
                    "decision": "gate_decision",
                    "comparison": "model_comparison",
                    "shap_importance": "shap_importance",
                    "train": "train_set",
                    "validation": "validation_set",
                    "test": "test_set",
                    "data_contract": CONTRACT,
                    "params": PARAMS,
                    "model_card_template": "model_card_template",
                },
                outputs={"card": "model_card", "serving_card": "serving_model_card"},
                name="render_model_card_node",
            ),
            Node(
                promote_model,
                inputs={
                    "model_version": "model_version",
                    "decision": "gate_decision",
                    "model_card": "model_card",
                },
                outputs=None,
                name="promote_model_node",
            ),
        ],
        tags="data_science",
    )
