"""Plain-text rendering shared by the CLI and the server's web UI (no terminal or HTTP library here)."""

from __future__ import annotations


def human_size(size: int | float | None) -> str:
    """Bytes as B, KB, MB or GB (1024 steps), "—" when unknown."""
    if size is None:
        return "—"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)
