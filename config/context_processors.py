"""Template context every page gets: links to the tools that run beside Nightshift."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def links(request: HttpRequest) -> dict[str, str]:
    """FLOWER_URL: where Flower answers (empty: no link is shown)."""
    return {"FLOWER_URL": settings.FLOWER_URL}
