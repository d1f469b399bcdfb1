"""Errors that say how to fix the problem: the key, the file, the accepted values."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)


class ContractError(ValueError):
    """The data, the contract or a configuration breaks a rule; the message says how to fix it."""


def config_error(exc: ValidationError, prefix: str, file: str) -> ContractError:
    """Turn a pydantic error on a YAML section into one message: each key, what is wrong, where."""
    problems = "; ".join(
        f"{'.'.join([prefix, *(str(p) for p in err['loc'])])}: {err['msg']}" for err in exc.errors()
    )
    return ContractError(f"{problems} (fix it in {file}, or in your environment's copy)")


def typed_section(model: type[Model], raw: Any, prefix: str, file: str) -> Model:
    """``raw`` as ``model``: as it is when already typed (Kedro passes typed ``params:``),
    validated when a mapping (tests, notebooks); a mistake names the key and the file."""
    if isinstance(raw, model):
        return raw
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise config_error(exc, prefix, file) from None
