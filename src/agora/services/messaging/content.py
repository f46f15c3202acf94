"""What users write, made safe: text sanitizing and suspicious-pattern detection.

Stored text is *safe text*, as `agora.core.text` (the one policy for user text,
docs/security.md) defines it: control characters are refused (422), markup is dropped
(the contents of `<script>` and `<style>` too), and the result is HTML-escaped text in a
canonical form:

- exactly `&amp;`, `&lt;`, `&gt;`, `&quot;`, `&#x27;` and `&nbsp;` remain as entities;
  every other entity the user wrote is decoded (`&#106;` becomes `j`, `&eacute;`
  becomes `é`);
- so it can be put into HTML as is, in element content or a quoted attribute, and a
  client that shows plain text gets the words back with `html.unescape(text)`
  (`a < b & c` is stored as `a &lt; b &amp; c`);
- sanitizing is idempotent: a client that sends back the stored text (escaped) or its
  unescaped form stores the same thing again, so edits never double-escape.

The one thing that does not round-trip is entity syntax typed on purpose (writing the
five characters `&lt;` shows `<`), the price of a single storage form that is safe
wherever it is embedded.

Detection looks at the text as sent, and at its entity-decoded form, so an encoded
`&#106;avascript:` is seen too. Findings are only reported (and audited by the
service); the sanitized text is stored either way.
"""

from __future__ import annotations

import html
import re

from agora.core.text import readable, safe_text

# Patterns worth an audit event; names are what the audit entry lists.
SUSPICIOUS: dict[str, re.Pattern[str]] = {
    "script_tag": re.compile(r"<\s{0,8}/?\s{0,8}script\b", re.IGNORECASE),
    "javascript_url": re.compile(
        r"\b(?:j\s*a\s*v\s*a|v\s*b)\s*s\s*c\s*r\s*i\s*p\s*t\s*:", re.IGNORECASE
    ),
    "data_html_url": re.compile(r"\bdata\s*:\s*text/html", re.IGNORECASE),
    # Within one tag, looked for a bounded way: no quadratic scan of "<<<<...".
    "event_handler": re.compile(r"<[^<>]{0,256}?[\s/\"']on[a-z]+\s*=", re.IGNORECASE),
    "dangerous_tag": re.compile(
        r"<\s{0,8}(?:iframe|object|embed|svg|style|link|meta|base|form)\b", re.IGNORECASE
    ),
}
# One character, or a chunk of up to 8, repeated this many times in a row: flooding.
REPEATED_RUN_MIN = 64
REPEATED_RUN = re.compile(rf"(.{{1,8}}?)\1{{{REPEATED_RUN_MIN - 1},}}", re.DOTALL)

# C0 controls other than tab, newline and carriage return. Only for names that do not
# come from a user's typing (an upload's file name): typed text is refused instead.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(raw: str) -> str:
    """`raw` without control characters and with lone surrogates replaced."""
    return CONTROL.sub("", raw.encode("utf-8", "replace").decode("utf-8"))


def clean_text(raw: str, field: str = "text") -> str:
    """Safe text of typed text (see the module docstring): 422 on a control character."""
    return safe_text(field, raw, multiline=True)


def clean_name(raw: str) -> str:
    """Safe text of a name a program made up (a file name): controls removed, not refused."""
    return safe_text("name", " ".join(printable(raw).splitlines()).replace("\t", " "))


__all__ = ["clean_name", "clean_text", "printable", "readable", "suspicious_patterns"]


def suspicious_patterns(raw: str) -> list[str]:
    """Names of the suspicious patterns found in `raw` (sorted, each once)."""
    decoded = html.unescape(raw)
    variants = (raw,) if decoded == raw else (raw, decoded)
    found = {
        name
        for name, pattern in SUSPICIOUS.items()
        if any(pattern.search(text) for text in variants)
    }
    if REPEATED_RUN.search(raw) is not None:
        found.add("repeated_run")
    return sorted(found)
