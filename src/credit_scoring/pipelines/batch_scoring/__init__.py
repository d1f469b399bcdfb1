"""Batch scoring: every known client scored with the registry's champion."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
