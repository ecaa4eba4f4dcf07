"""Image tests need torch-pruning and mlxtend (the `vision` extra); fixtures: tests/conftest.py."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")
pytest.importorskip("mlxtend")
