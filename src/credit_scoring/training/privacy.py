"""Keyed pseudonymisation of client identifiers (HMAC-SHA256).

The same key always maps the same raw id to the same pseudonym, so tables can be joined and
a client can be looked up later, while nobody without the key can go back to the raw id.
The key comes from the environment or ``conf/local/credentials.yml``, never from the repo.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

KEY_ENV_VAR = "CREDIT_SCORING_PSEUDONYMISATION_KEY"
CREDENTIALS_ENTRY = "pseudonymisation"
MIN_KEY_LENGTH = 32
PLACEHOLDER_MARKERS = ("replace-with", "changeme", "change-me", "example", "xxxx")
# Public on purpose: it makes local runs and DVC hashes reproducible, and is refused in prod.
DEVELOPMENT_KEY = "development-only-pseudonymisation-key-do-not-use-in-production"


class PseudonymisationKeyError(RuntimeError):
    """No acceptable key: the message says where to put one."""


def resolve_key(
    credentials: Mapping[str, Any] | None,
    allow_development_key: bool,
    environ: Mapping[str, str] = os.environ,
) -> str:
    """Pick the key: environment first, then ``credentials.yml``, then the development key."""
    creds_entry = (credentials or {}).get(CREDENTIALS_ENTRY) or {}
    key = environ.get(KEY_ENV_VAR) or creds_entry.get("key")
    if key:
        if any(marker in str(key).lower() for marker in PLACEHOLDER_MARKERS):
            raise PseudonymisationKeyError(
                "The pseudonymisation key is still a placeholder. Put a random key in "
                f"{KEY_ENV_VAR} or conf/local/credentials.yml (e.g. `python -c 'import secrets; "
                "print(secrets.token_hex(32))'`)."
            )
        if len(key) < MIN_KEY_LENGTH:
            raise PseudonymisationKeyError(
                f"The pseudonymisation key is {len(key)} characters long; use at least "
                f"{MIN_KEY_LENGTH} random characters (e.g. `python -c 'import secrets; "
                f"print(secrets.token_hex(32))'`)."
            )
        return str(key)
    if not allow_development_key:
        raise PseudonymisationKeyError(
            f"No pseudonymisation key, and this environment refuses the development key. Set "
            f"{KEY_ENV_VAR}, or add `{CREDENTIALS_ENTRY}: {{key: ...}}` to "
            f"conf/<env>/credentials.yml (kept out of git)."
        )
    logger.warning(
        "!!! USING THE PUBLIC DEVELOPMENT PSEUDONYMISATION KEY !!! Client ids are NOT protected. "
        "Set %s or conf/local/credentials.yml before touching real data.",
        KEY_ENV_VAR,
    )
    return DEVELOPMENT_KEY


def pseudonymise_value(value: Any, key: str) -> str:
    """HMAC-SHA256 of one identifier, as 64 hex characters."""
    return hmac.new(key.encode(), str(value).encode(), hashlib.sha256).hexdigest()


def pseudonymise_series(ids: pd.Series, key: str) -> pd.Series:
    """Pseudonymise a column of ids; missing ids stay missing (the contract rejects them)."""
    # One HMAC per distinct id: a secondary table repeats each client many times.
    codes, uniques = pd.factorize(ids, use_na_sentinel=True)
    pseudonyms = np.array(
        [None if (v := _normalise_id(u)) is None else pseudonymise_value(v, key) for u in uniques]
        + [None],  # position -1: missing id
        dtype=object,
    )
    return pd.Series(pseudonyms[codes], index=ids.index, dtype=object)


def _normalise_id(value: Any) -> str | None:
    # 100002 read as int, float (100002.0, from a column with gaps) or str maps to one pseudonym.
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip() or None
