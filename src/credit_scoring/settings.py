"""Kedro project settings."""

from credit_scoring.config.loader import LOADER_ARGS, ProjectConfigLoader
from credit_scoring.hooks import ProjectHooks

HOOKS = (ProjectHooks(),)

CONFIG_LOADER_CLASS = ProjectConfigLoader
CONFIG_LOADER_ARGS = LOADER_ARGS
