"""Project datasets beyond kedro-datasets."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from kedro_datasets.pandas import CSVDataset


class OptionalCSVDataset(CSVDataset):
    """A CSV file that may be absent (loads as None): e.g. the synthetic data's ground truth."""

    def load(self) -> pd.DataFrame | None:
        if not Path(self._filepath).exists():
            return None
        return super().load()
