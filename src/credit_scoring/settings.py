"""Kedro project settings."""

from credit_scoring.hooks import ProjectHooks
from credit_scoring.project_config import LOADER_ARGS, ProjectConfigLoader

HOOKS = (ProjectHooks(),)

CONFIG_LOADER_CLASS = ProjectConfigLoader
CONFIG_LOADER_ARGS = LOADER_ARGS
