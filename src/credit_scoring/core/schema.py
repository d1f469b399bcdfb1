"""The one strict base of every configuration model: an unknown key is an error, not ignored.

A typo in ``conf/`` (``n_trails``) must fail at start-up with the key and the file named,
never be silently dropped; every section's model derives from ``Strict``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FrozenStrict(Strict):
    """A declaration that is shared (contract, features): read-only once parsed."""

    model_config = ConfigDict(extra="forbid", frozen=True)
