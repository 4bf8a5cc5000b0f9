"""The render stage: template, locale and A/B variant for one user's notification."""

from __future__ import annotations

import os
from pathlib import Path

from flows.templates import TemplateCatalog, TemplateError
from kernel.keyed import finished

DEFAULT_TEMPLATES = Path(__file__).resolve().parent.parent / "infra" / "templates"


def catalog_from_env() -> TemplateCatalog:
    return TemplateCatalog.from_directory(Path(os.environ.get("NOTIFYFLOW_TEMPLATES", DEFAULT_TEMPLATES)))


def render(catalog: TemplateCatalog, item: dict) -> dict:
    locale = item["user"]["preferences"]["locale"]
    try:
        rendered = catalog.render(item["request"], item["user_id"], locale)
    except TemplateError as exc:
        return finished(item, "dead_letter", f"user {item['user_id']}: {exc.reason}", stage="render")
    return {**item, "rendered": rendered}
