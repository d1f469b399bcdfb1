"""Training wiring: split, leakage check, candidates, selection, evaluation, registry gate."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    check_leakage,
    evaluate_model,
    explain_model,
    plot_coefficient_path,
    register_model,
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
                register_model,
                inputs={
                    "selected": "selected_model",
                    "test": "test_set",
                    "train": "train_set",
                    "validation": "validation_set",
                    "test_metrics": "test_metrics",
                    "dummy_metrics": "dummy_test_metrics",
                    "comparison": "model_comparison",
                    "shap_importance": "shap_importance",
                    "data_contract": CONTRACT,
                    "params": PARAMS,
                    "outlier_bounds": "outlier_bounds",
                    "processing_params": "params:data_processing",
                    "model_card_template": "model_card_template",
                },
                outputs={"gate_report": "gate_report", "model_card": "model_card"},
                name="register_model_node",
            ),
        ],
        tags="data_science",
    )
