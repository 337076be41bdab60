"""Stable short hashes of parameter dictionaries, stored in artifact attrs."""

from __future__ import annotations

import hashlib
import json


def fingerprint(obj) -> str:
    blob = json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]
