"""Prefect flows composing the tasks in ``tasks/``: each reads like the story of one pipeline.

Importing this package points Prefect at the tava home (``$TAVA_HOME``, default ./.tava)
before Prefect itself is imported (``flows._prefect``: everything tava does for Prefect).
"""
from ._prefect import configure_environment as _configure_environment

_configure_environment()
