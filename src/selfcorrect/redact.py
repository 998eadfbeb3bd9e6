"""Secrets never stored or printed: URLs lose their userinfo, query and fragment; any known key
(the API key environment variables, secrets seen in URLs) is replaced in text that is stored,
written or shown."""

from __future__ import annotations

import os
import re
from urllib.parse import parse_qsl, urlsplit, urlunsplit

KEY_VARS = ("SELFCORRECT_API_KEY", "OPENAI_API_KEY")
MASK = "***"
_SEEN: set[str] = set()  # secrets found in URLs this process saw
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def _remember_url_secrets(url: str) -> None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return
    for secret in (parts.password, parts.username):
        if secret and len(secret) >= 4:
            _SEEN.add(secret)
    for _, value in parse_qsl(parts.query):
        if len(value) >= 4:
            _SEEN.add(value)


def redact_url(url: str | None) -> str | None:
    """The URL without userinfo, query string and fragment (where keys hide)."""
    if url is None:
        return None
    _remember_url_secrets(url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def secrets() -> list[str]:
    found = {os.environ[v] for v in KEY_VARS if len(os.environ.get(v, "")) >= 4}
    return sorted(found | _SEEN, key=len, reverse=True)


def scrub(text: str) -> str:
    """`text` with every URL redacted and every known secret masked."""
    text = _URL.sub(lambda m: redact_url(m.group(0)) or MASK, text)
    for secret in secrets():
        text = text.replace(secret, MASK)
    return text


def scrub_data(obj):
    """The same for JSON-like data (manifests)."""
    if isinstance(obj, str):
        return scrub(obj)
    if isinstance(obj, dict):
        return {k: scrub_data(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [scrub_data(v) for v in obj]
    return obj
