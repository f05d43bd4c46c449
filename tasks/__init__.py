"""Thin Prefect tasks around ``tava_core`` functions: cache keys, retries, artifacts.

Tasks pass paths and small records, never big arrays. Importing this package points Prefect at
the tava home before Prefect is imported.
"""
from tava_core.home import configure_environment as _configure_environment

_configure_environment()
