"""``synthetic`` in ``conf/base/parameters_synthetic.yml``: the generator of the embedded data."""

from __future__ import annotations

from pydantic import Field

from credit_scoring.core.schema import Strict

HOME_CREDIT_SIZE = 307_511


class SyntheticParams(Strict):
    """``synthetic`` in ``conf/base/parameters_synthetic.yml``."""

    n_applications: int = Field(30_000, ge=100, description=f"{HOME_CREDIT_SIZE} = Home Credit")
    seed: int = 42
    default_rate: float = Field(0.08, gt=0.0, lt=0.5)
    mean_bureau_credits: float = Field(6.5, ge=0.0)
    duplicate_fraction: float = Field(0.003, ge=0.0, le=0.1)
    invalid_fraction: float = Field(0.001, ge=0.0, le=0.1)
    outlier_fraction: float = Field(0.0005, ge=0.0, le=0.1)
    drift: bool = False
    output_dir: str = "data/01_raw"
    chunk_applications: int = Field(
        500_000,
        ge=1000,
        description="applications generated and written at a time: memory follows this, not "
        "n_applications (one chunk gives exactly the tables of earlier versions)",
    )
