"""Monitoring: drift of production traffic and performance on delayed labels."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
