"""Every top-level parameter key and its strict model: the one table of the configuration.

A new section of ``conf/`` gets its model in this package (or, when the service reads it too,
in ``core``) and one line here; ``make lint`` keeps this module free of training libraries,
so checking the configuration of a monitoring run never imports LightGBM or Optuna.
"""

from __future__ import annotations

from pydantic import BaseModel

from credit_scoring.config.batch_scoring import BatchScoringParams
from credit_scoring.config.data_science import DataScienceParams
from credit_scoring.config.ingestion import IngestionParams
from credit_scoring.config.monitoring import MonitoringParams
from credit_scoring.config.synthetic import SyntheticParams
from credit_scoring.core.contract import DataContract
from credit_scoring.core.processing import ProcessingParams
from credit_scoring.core.spec import ServingConfig

SECTIONS: dict[str, type[BaseModel]] = {
    "data_contract": DataContract,
    "data_ingestion": IngestionParams,
    "data_processing": ProcessingParams,
    "data_science": DataScienceParams,
    "serving": ServingConfig,
    "monitoring": MonitoringParams,
    "batch_scoring": BatchScoringParams,
    "synthetic": SyntheticParams,
}
