"""Request and response examples of the main flows, by operationId (see loyalty.contract)."""

from __future__ import annotations

from typing import Any

EXAMPLES: dict[str, dict[str, Any]] = {}
