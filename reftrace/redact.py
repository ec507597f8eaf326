"""Masking of secrets in everything reftrace renders.

Labels come from user data: a dict key can be an API key, a local variable's
name can sit beside a token, a module can keep ``password=...`` in a string.
Every renderer (text, SVG, HTML, JSON) passes its strings through :func:`mask`,
which replaces what looks like a credential with ``[masked]`` and keeps a short
prefix so a person can still tell which kind of secret it was.

Masking is on by default. ``reftrace.set_masking(False)`` turns it off for the
process; ``set_masking(True, extra=[r"acme-[0-9a-f]{32}"])`` adds patterns.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable

MASK = "[masked]"

# Each pattern keeps group 1 (a recognisable prefix) and masks the rest.
_BUILTIN: tuple[tuple[str, str], ...] = (
    # OpenAI / Anthropic style keys: sk-..., sk-proj-..., sk-ant-...
    ("api key", r"\b(sk-)[A-Za-z0-9_\-]{12,}"),
    # Authorization headers and bare bearer tokens
    ("bearer token", r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/]{8,}=*"),
    ("basic auth", r"(?i)\b(basic\s+)[A-Za-z0-9+/]{12,}=*"),
    # AWS access key ids (AKIA = long-term, ASIA = temporary)
    ("aws key id", r"\b((?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA))[A-Z0-9]{16}\b"),
    # AWS secret access keys, when named
    (
        "aws secret",
        r"(?i)(aws_?secret_?(?:access_?)?key\s*[=:]\s*['\"]?)[A-Za-z0-9/+=]{40}",
    ),
    # GitHub, GitLab, Slack, Google, Stripe tokens
    ("github token", r"\b(gh[pousr]_)[A-Za-z0-9]{20,}"),
    ("github token", r"\b(github_pat_)[A-Za-z0-9_]{20,}"),
    ("gitlab token", r"\b(glpat-)[A-Za-z0-9_\-]{20,}"),
    ("slack token", r"\b(xox[abposr]-)[A-Za-z0-9\-]{10,}"),
    ("google key", r"\b(AIza)[A-Za-z0-9_\-]{35}"),
    ("stripe key", r"\b((?:sk|rk|pk)_(?:live|test)_)[A-Za-z0-9]{16,}"),
    # JSON web tokens: three base64url parts, the first two starting with eyJ
    ("jwt", r"\b(eyJ)[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]+"),
    # password=..., secret: ..., api_key="...", token=... (value up to a delimiter)
    (
        "credential",
        r"(?i)((?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token"
        r"|token|client[_-]?secret)[\"']?\s*[=:]\s*[\"']?)[^\s\"',;&}\]]{3,}",
    ),
    # URLs with credentials: scheme://user:password@host
    ("url password", r"(\b[a-z][a-z0-9+.\-]*://[^\s:/@]+:)[^\s@/]+(?=@)"),
    # PEM private keys
    (
        "private key",
        r"(-----BEGIN [A-Z ]*PRIVATE KEY-----)[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)",
    ),
)


class _Settings:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.enabled = True
        self.patterns: list[re.Pattern[str]] = [re.compile(p) for _, p in _BUILTIN]


_settings = _Settings()


def set_masking(enabled: bool = True, *, extra: Iterable[str] = ()) -> None:
    """Turn secret masking on or off for every renderer, and add patterns.

    ``extra`` patterns are regular expressions; a match is replaced whole by
    ``[masked]`` (or, when the pattern has a group 1, everything after it).
    Raises ``TypeError``/``ValueError`` on a non-bool or an invalid pattern,
    leaving the settings as they were.
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool, got {type(enabled).__name__}")
    if isinstance(extra, str):
        raise TypeError("extra must be an iterable of patterns, not one string")
    compiled: list[re.Pattern[str]] = []
    for pattern in extra:
        if not isinstance(pattern, str):
            raise TypeError(f"each extra pattern must be a str, got {type(pattern).__name__}")
        try:
            compiled.append(re.compile(pattern))
        except re.error as error:
            raise ValueError(f"invalid masking pattern {pattern!r}: {error}") from None
    with _settings.lock:
        _settings.enabled = enabled
        _settings.patterns.extend(compiled)


def masking_enabled() -> bool:
    return _settings.enabled


def _replace(match: re.Match[str]) -> str:
    prefix = match.group(1) if match.re.groups >= 1 and match.group(1) else ""
    return prefix + MASK


def mask(text: str, enabled: bool | None = None) -> str:
    """``text`` with every secret-looking substring replaced by ``[masked]``.

    ``enabled`` overrides the process-wide setting for this call.
    """
    if not (_settings.enabled if enabled is None else enabled):
        return text
    for pattern in _settings.patterns:
        text = pattern.sub(_replace, text)
    return text


def mask_data(data: object, enabled: bool | None = None) -> object:
    """A copy of JSON-ready ``data`` with every string (keys too) masked."""
    if not (_settings.enabled if enabled is None else enabled):
        return data
    if isinstance(data, str):
        return mask(data, True)
    if isinstance(data, dict):
        return {mask_data(k, True): mask_data(v, True) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [mask_data(v, True) for v in data]
    return data
