"""The one policy for user-supplied text (docs/security.md, "User text").

Every text field a user sends (login, e-mail, display name, publication title and
body, message text, group title, social chat content, upload file names) goes through
this module, so one rule holds everywhere:

1. **Refused (422)**: C0 controls other than tab, newline and carriage return (and
   those three too in one-line fields: names, titles, logins), DEL, the C1 controls
   U+0080-U+009F, lone surrogates (JSON `"\\ud800"`), and the bidi embedding, override
   and isolate controls U+202A-U+202E, U+2066-U+2069 (the "Trojan Source" reordering).
   NUL would also break PostgreSQL text (a 500 before this rule). The marks U+200E/F
   (LRM, RLM), which right-to-left writers need, stay allowed.
2. **Safe text** (`safe_text`: names, titles, messages, chat): nh3 (the Rust `ammonia`
   sanitizer) with no tag allowed drops markup (and the contents of `<script>` and
   `<style>`); then the quotes are escaped too. The result holds no `<`, `>`, `"` or
   `'` and no `&` that does not start an entity, so it is safe as HTML element content
   *and* inside a quoted attribute. A client that shows plain text gets the words back
   with an HTML-unescape (`readable`). It is idempotent: sending stored text back
   stores the same thing.
3. **Safe HTML** (`safe_html`, publication bodies): the tags of `BODY_TAGS` only;
   links only to `http:`, `https:` and `mailto:` targets (no relative or
   protocol-relative `//host` URL, no `ssh:` or `magnet:`), with
   `rel="noopener noreferrer"`.
"""

from __future__ import annotations

import html
import re
from typing import Annotated

import nh3
from pydantic import AfterValidator, Field

from agora.core.errors import Invalid

# Never in any field: C0 but tab/LF/CR, DEL, C1, the bidi embeddings/overrides/isolates.
_REFUSED = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# In one-line fields, tab, LF and CR too.
_REFUSED_IN_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")

# Rule 1 as JSON-schema patterns, for the OpenAPI document (clients and fuzzers learn
# what is refused); `refusal` is what enforces it.
# (Lone surrogates, refused too, are left out: no regex dialect spells them the same.)
LINE_PATTERN = r"^[^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$"
TEXT_PATTERN = (
    r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$"
)
LINE_SCHEMA = Field(json_schema_extra={"pattern": LINE_PATTERN})
TEXT_SCHEMA = Field(json_schema_extra={"pattern": TEXT_PATTERN})

BODY_TAGS = frozenset(
    {"p", "br", "b", "strong", "i", "em", "u", "s", "code", "pre", "blockquote"}
    | {"ul", "ol", "li", "a"}
)
LINK_SCHEMES = frozenset({"http", "https", "mailto"})
_LINK_PREFIXES = tuple(f"{scheme}:" for scheme in LINK_SCHEMES)


def refusal(value: str, *, multiline: bool = False) -> str | None:
    """Why `value` is refused by rule 1, or None if it is not."""
    pattern = _REFUSED if multiline else _REFUSED_IN_LINE
    found = pattern.search(value)
    if found is not None:
        return f"Control character U+{ord(found.group()):04X} is not allowed"
    if _SURROGATE.search(value) is not None:
        return "Invalid Unicode (lone surrogate)"
    return None


def checked(field: str, value: str, *, multiline: bool = False) -> str:
    """`value` itself, or `Invalid` (422) under rule 1."""
    reason = refusal(value, multiline=multiline)
    if reason is not None:
        raise Invalid(field, reason)
    return value


_PLAIN = nh3.Cleaner(tags=set())
_QUOTES = str.maketrans({'"': "&quot;", "'": "&#x27;"})


def safe_text(field: str, raw: str, *, multiline: bool = False) -> str:
    """Rule 1, then rule 2: the stored form of a plain-text field, stripped."""
    checked(field, raw, multiline=multiline)
    return _PLAIN.clean(raw).translate(_QUOTES).strip()


def shown(stored: str) -> str:
    """Rule 2 for text stored before this policy (a display name from an older release):
    refused characters removed rather than refused. Idempotent on safe text, so reading
    paths apply it to whatever the table holds."""
    text = _SURROGATE.sub("", _REFUSED_IN_LINE.sub("", stored))
    return _PLAIN.clean(text).translate(_QUOTES).strip()


def _link_filter(tag: str, attribute: str, value: str) -> str | None:
    # ammonia lets relative URLs (`/x`, `//host`) through whatever the schemes: only
    # absolute links of the promised schemes stay.
    if attribute == "href" and not value.lower().startswith(_LINK_PREFIXES):
        return None
    return value


_BODY = nh3.Cleaner(
    tags=set(BODY_TAGS),
    attributes={"a": {"href", "title"}},
    url_schemes=set(LINK_SCHEMES),
    attribute_filter=_link_filter,
)


def safe_html(field: str, raw: str) -> str:
    """Rule 1 (multi-line), then rule 3: the stored form of a rich-text field."""
    checked(field, raw, multiline=True)
    return _BODY.clean(raw)


def readable(safe: str) -> str:
    """What safe text shows to a reader: its entities decoded."""
    return html.unescape(safe)


def _line(value: str) -> str:
    reason = refusal(value)
    if reason is not None:
        raise ValueError(reason)
    return value


def _display(value: str) -> str:
    cleaned = safe_text("", value) if refusal(value) is None else _line(value)
    if not cleaned:
        raise ValueError("Empty once markup is removed")
    return cleaned


# For pydantic request models: a 422 with the field's name, through the usual handler.
LINE_RULE = AfterValidator(_line)
"""Rule 1 for a one-line field, as pydantic metadata (`Annotated[EmailStr, LINE_RULE]`)."""
Line = Annotated[str, LINE_RULE, LINE_SCHEMA]
"""A one-line field kept as sent (logins, e-mails): rule 1 only."""
DisplayText = Annotated[str, AfterValidator(_display), LINE_SCHEMA]
"""A one-line field shown to others (display names): rules 1 and 2."""
