"""Per-user rendering of one notification's content.

Templates are operator-supplied text, so they run in Jinja's immutable sandbox and
everything HTML is sanitised last, after rendering, whatever the template produced.
Plain Python on purpose (no bytewax): the dataflow steps call `TemplateCatalog.render`.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import jinja2
import nh3
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from markupsafe import escape

DEFAULT_LOCALE = "en"
TITLE_LIMIT = 200
BODY_LIMIT = 4000
BUCKETS = 10_000
ELLIPSIS = "…"

ALLOWED_TAGS = {
    "p", "br", "b", "strong", "i", "em", "u", "a", "ul", "ol", "li", "span", "div", "img",
    "h1", "h2", "h3", "h4", "table", "thead", "tbody", "tr", "th", "td",
}
ALLOWED_ATTRIBUTES = {"a": {"href"}, "img": {"src", "alt"}}
# No http (mixed content, tracking), and no relative URLs: they mean nothing inside an email.
URL_SCHEMES = {"https", "mailto"}

# Undefined variables must fail loudly rather than ship "Hi ," to millions of users.
_TEXT_ENV = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
_HTML_ENV = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=True)


class TemplateError(ValueError):
    """A template that cannot be rendered; `.reason` (str) says why, naming template id and locale."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@functools.lru_cache(maxsize=4096)
def normalise_locale(tag: str | None) -> str | None:
    """`fr_ca`, `FR-ca` -> `fr-CA`; `zh_hant_tw` -> `zh-Hant-TW`; blank -> None."""
    if not tag or not tag.strip():
        return None
    first, *rest = tag.strip().replace("_", "-").split("-")
    parts = [first.lower()]
    for part in rest:
        parts.append(part.upper() if len(part) == 2 else part.title() if len(part) == 4 else part.lower())
    return "-".join(parts)


def bucket(*keys: str) -> int:
    # sha256, not hash(): the assignment must agree across processes and restarts.
    digest = hashlib.sha256("\x1f".join(keys).encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def pick_variant(weights: dict[str, float], point: int) -> str:
    """Map a bucket onto the cumulative weights, in variant-name order."""
    total = sum(weights.values())
    cumulative = 0.0
    for name in sorted(weights):
        cumulative += weights[name]
        if point * total < cumulative * BUCKETS:
            return name
    # Only reachable through float rounding on the very last bucket.
    return [name for name in sorted(weights) if weights[name] > 0][-1]


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def text_to_html(text: str) -> str:
    return str(escape(text.replace("\r\n", "\n").replace("\r", "\n"))).replace("\n", "<br>")


def sanitise(html: str) -> str:
    return nh3.clean(
        html, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES, url_schemes=URL_SCHEMES, url_relative="deny"
    )


class TemplateCatalog:
    def __init__(self, templates: dict[str, dict]):
        # (template_id, variant, locale, field) -> compiled template; compiled once, here,
        # so a syntax error surfaces at load time instead of on the first unlucky user.
        self._compiled: dict[tuple[str, str, str, str], jinja2.Template] = {}
        self._weights: dict[str, dict[str, float]] = {}
        self._locales: dict[tuple[str, str], list[str]] = {}
        for template_id, definition in templates.items():
            self._load(template_id, definition)

    @classmethod
    def from_directory(cls, path) -> TemplateCatalog:
        directory = Path(path)
        if not directory.is_dir():
            raise TemplateError(f"template directory {directory} does not exist")
        templates = {}
        for file in sorted(directory.glob("*.json")):
            try:
                templates[file.stem] = json.loads(file.read_text(encoding="utf-8"))
            except (ValueError, OSError) as exc:
                raise TemplateError(f"template {file.stem!r}: cannot read {file}: {exc}") from exc
        return cls(templates)

    def _load(self, template_id: str, definition: dict) -> None:
        variants = definition.get("variants") if isinstance(definition, dict) else None
        if not isinstance(variants, dict) or not variants:
            raise TemplateError(f"template {template_id!r}: 'variants' must be a non-empty object")
        weights = {}
        for name, variant in variants.items():
            where = f"template {template_id!r} variant {name!r}"
            weight = variant.get("weight") if isinstance(variant, dict) else None
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
                raise TemplateError(f"{where}: 'weight' must be a number >= 0")
            weights[name] = weight
            locales = variant.get("locales")
            if not isinstance(locales, dict) or not locales:
                raise TemplateError(f"{where}: 'locales' must be a non-empty object")
            order = []
            for raw_locale, fields in locales.items():
                locale = normalise_locale(raw_locale)
                if locale is None or locale in order:
                    raise TemplateError(f"{where} locale {raw_locale!r}: empty or duplicate locale")
                order.append(locale)
                self._compile(template_id, name, locale, fields)
            self._locales[(template_id, name)] = order
        if sum(weights.values()) <= 0:
            raise TemplateError(f"template {template_id!r}: variant weights must not all be 0")
        self._weights[template_id] = weights

    def _compile(self, template_id: str, variant: str, locale: str, fields) -> None:
        where = f"template {template_id!r} locale {locale!r}"
        if not isinstance(fields, dict) or not all(isinstance(fields.get(k), str) for k in ("title", "body")):
            raise TemplateError(f"{where}: 'title' and 'body' must be strings")
        for field in ("title", "body", "html"):
            source = fields.get(field)
            if source is None:
                continue
            if not isinstance(source, str):
                raise TemplateError(f"{where}: {field!r} must be a string")
            env = _HTML_ENV if field == "html" else _TEXT_ENV
            try:
                self._compiled[(template_id, variant, locale, field)] = env.from_string(source)
            except jinja2.TemplateSyntaxError as exc:
                raise TemplateError(f"{where}: syntax error in {field} (line {exc.lineno}): {exc.message}") from exc

    def render(self, request: dict, user_id: str, locale: str | None) -> dict:
        content = request.get("content") or {}
        campaign_id = (request.get("metadata") or {}).get("campaign_id") or ""
        wanted = normalise_locale(locale) or normalise_locale(request.get("locale"))
        template_id = request.get("template_id")

        if not template_id:
            variant = pick_variant({"A": 1, "B": 1}, bucket("", campaign_id, user_id)) if campaign_id else None
            title, body, html = content.get("title") or "", content.get("body") or "", None
            used = wanted or DEFAULT_LOCALE
        else:
            if template_id not in self._weights:
                raise TemplateError(f"unknown template {template_id!r} (locale {wanted or DEFAULT_LOCALE!r})")
            variant = pick_variant(self._weights[template_id], bucket(template_id, campaign_id, user_id))
            used = self._resolve_locale(template_id, variant, wanted)
            context = {
                **(request.get("template_vars") or {}),
                # Set by the pipeline, so they win over caller-supplied template_vars.
                "title": content.get("title") or "",
                "body": content.get("body") or "",
                "user_id": user_id,
                "category": request.get("category"),
            }
            title, body, html = (
                self._render_field(template_id, variant, used, field, context) for field in ("title", "body", "html")
            )

        title, body = truncate(title, TITLE_LIMIT), truncate(body, BODY_LIMIT)
        # Escaped text is safe as it is; only template HTML needs the sanitiser.
        html_body = sanitise(html) if html is not None else text_to_html(body)
        return {
            "title": title,
            "body": body,
            "html_body": html_body,
            "locale": used,
            "variant": variant,
            "template_id": template_id or None,
        }

    def _resolve_locale(self, template_id: str, variant: str, wanted: str | None) -> str:
        defined = self._locales[(template_id, variant)]
        parts = wanted.split("-") if wanted else []
        # zh-Hant-TW -> zh-Hant-TW, zh-Hant, zh, en; then whatever the variant has first.
        for candidate in ["-".join(parts[:n]) for n in range(len(parts), 0, -1)] + [DEFAULT_LOCALE]:
            if candidate in defined:
                return candidate
        return defined[0]

    def _render_field(self, template_id: str, variant: str, locale: str, field: str, context: dict) -> str | None:
        template = self._compiled.get((template_id, variant, locale, field))
        if template is None:
            return None
        try:
            return template.render(context)
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"template {template_id!r} locale {locale!r}: in {field}: {exc.message}") from exc
        except SecurityError as exc:
            raise TemplateError(f"template {template_id!r} locale {locale!r}: unsafe {field}: {exc}") from exc
        except Exception as exc:
            # Template code is operator input: any failure inside it is a template fault, not ours.
            raise TemplateError(
                f"template {template_id!r} locale {locale!r}: error in {field}: {type(exc).__name__}: {exc}"
            ) from exc
