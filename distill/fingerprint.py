"""A short digest of a JSON-able value: the name of what it identifies (a teacher stage, a
configuration)."""
from __future__ import annotations

import hashlib
import json


def fingerprint(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]
