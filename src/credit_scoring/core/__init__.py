"""What training, serving and every engine share: pure declarations and transformations.

The data contract, the feature and processing declarations with their typed models, category
encoding, the row transformer, the serving spec, lineage, and the one strict base of every
configuration model. No I/O here: the database and the stores are in ``storage``, token
verification in ``auth``. Dependencies: pydantic, numpy, pandas. Everything points down to
this layer, and it imports nothing above it (`make lint`, docs/architecture.md).
"""
