"""Files generated from one source (dashboards, Kubernetes objects): written, or checked."""

from __future__ import annotations

import sys
from pathlib import Path


def write_or_check(files: dict[Path, str], check: bool, fix: str) -> int:
    """Write ``files``; with ``check``, write nothing and fail (1) naming those that differ."""
    stale = []
    for path, text in files.items():
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(f"These files differ from their source ({fix}): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0
