"""The monitoring loop: drift and delayed-label performance, their metrics, the retrain trigger.

Training-side code (it reads MLflow and runs Kedro); the scoring service never imports it.
"""
