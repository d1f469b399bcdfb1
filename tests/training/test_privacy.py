"""Pseudonymisation: keyed, stable, irreversible without the key, refused without a key in prod."""

from __future__ import annotations

import hashlib
import hmac
import logging

import pandas as pd
import pytest

from credit_scoring.training.privacy import (
    DEVELOPMENT_KEY,
    KEY_ENV_VAR,
    PseudonymisationKeyError,
    pseudonymise_series,
    resolve_key,
)

KEY = "k" * 40


def test_pseudonym_is_the_hmac_sha256_of_the_id():
    expected = hmac.new(KEY.encode(), b"100002", hashlib.sha256).hexdigest()
    assert pseudonymise_series(pd.Series([100002]), KEY).iloc[0] == expected


def test_same_id_in_any_type_gives_one_pseudonym_and_missing_stays_missing():
    out = pseudonymise_series(pd.Series([100002, 100002.0, "100002", None], dtype=object), KEY)
    assert out.iloc[0] == out.iloc[1] == out.iloc[2]
    assert out.iloc[3] is None


def test_another_key_gives_other_pseudonyms():
    ids = pd.Series([1, 2, 3])
    assert not set(pseudonymise_series(ids, KEY)) & set(pseudonymise_series(ids, "z" * 40))


def test_environment_wins_over_credentials():
    creds = {"pseudonymisation": {"key": "c" * 40}}
    assert resolve_key(creds, False, environ={KEY_ENV_VAR: "e" * 40}) == "e" * 40
    assert resolve_key(creds, False, environ={}) == "c" * 40


def test_development_key_is_loud_locally(caplog):
    with caplog.at_level(logging.WARNING):
        assert resolve_key({}, True, environ={}) == DEVELOPMENT_KEY
    assert "DEVELOPMENT PSEUDONYMISATION KEY" in caplog.text


def test_development_key_is_refused_where_not_allowed():
    with pytest.raises(PseudonymisationKeyError, match=KEY_ENV_VAR):
        resolve_key(None, False, environ={})


def test_short_key_is_refused():
    with pytest.raises(PseudonymisationKeyError, match="at least 32"):
        resolve_key({}, True, environ={KEY_ENV_VAR: "short"})


def test_placeholder_key_is_refused():
    creds = {"pseudonymisation": {"key": "replace-with-64-random-hex-characters"}}
    with pytest.raises(PseudonymisationKeyError, match="placeholder"):
        resolve_key(creds, True, environ={})


def test_no_committed_credentials_file_under_conf():
    # Kedro loads every credentials*.yml under conf/: an example committed there would be read
    # as real credentials. Only a developer's own (git-ignored) conf/local/credentials.yml may exist.
    from credit_scoring.config.loader import PROJECT_ROOT

    found = {
        p.relative_to(PROJECT_ROOT).as_posix()
        for p in (PROJECT_ROOT / "conf").rglob("credentials*")
    }
    assert found <= {"conf/local/credentials.yml"}
