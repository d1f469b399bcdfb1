"""What the training pipelines and the scoring API share, and nothing else.

The data contract, the feature and processing declarations with their typed models, category
encoding, the row transformer, the serving spec and the event and client-feature stores.
Dependencies: pydantic, numpy, pandas, SQLAlchemy, orjson. The arrows point here:
pipelines -> core <- serving, never serving -> pipelines; `make lint` (import-linter, see
pyproject.toml) fails when a change breaks that.
"""
