"""Shared data of the routing tests (tests/route/)."""
from __future__ import annotations

# Query-like texts for the tiny routers of the routing tests.
TEXTS = [f"how does the {w} {v} the {o}" for w in ("cell", "gene", "parser", "optimizer", "protein")
         for v in ("regulate", "change") for o in ("response", "output", "memory", "rate")]
