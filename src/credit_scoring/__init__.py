"""Credit default scoring: a forkable, production-shaped MLOps template."""

__version__ = "0.1.0"
