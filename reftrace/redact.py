"""Masking of secrets, and safe forms of user strings, for everything reftrace renders.

Labels come from user data: a dict key can be an API key, a local variable's
name can sit beside a token, a module can keep ``password=...`` in a string.
Every renderer (text, SVG, HTML, JSON) passes its strings through :func:`mask`,
which replaces what looks like a credential with ``[masked]`` and keeps a short
prefix so a person can still tell which kind of secret it was.

Masking is on by default. ``reftrace.set_masking(False)`` turns it off for the
process; ``set_masking(True, extra=[r"acme-[0-9a-f]{32}"])`` adds patterns.

Beside masking, every user string is bounded before it is shown:
:func:`clean` (for people: text, SVG, HTML) masks, writes control and
invisible characters as escapes (``\\x1b``, ``\\n``, ``\\u202e``) and
truncates; :func:`bound` (for JSON) masks and truncates but keeps the
characters themselves, which JSON encodes safely.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterable

MASK = "[masked]"
ELLIPSIS = "…"

#: Longest string kept in JSON (``Report.to_dict``, ``Report.save``).
JSON_LIMIT = 1000

# A long string is cut to this many characters beyond the display limit
# before masking, so masking a 10 MB label costs no more than a short one,
# while a secret that starts inside the shown part is still seen whole.
_MASK_MARGIN = 4096

# A secret is never masked again: "sk-[masked]" must stay as it is, so that
# masking is idempotent (a saved, masked report loads and renders the same).
_NOT_MASKED = r"(?!\[masked\])"
# Start of a token: not preceded by a letter or digit (an underscore may be:
# "aws_AKIA..." is still a key).
_START = r"(?<![A-Za-z0-9])"
_END = r"(?![A-Za-z0-9])"

_CREDENTIAL_WORDS = (
    r"password|passwd|passphrase|pwd|secret|api[_-]?key|apikey|access[_-]?key"
    r"|private[_-]?key|token|authorization|credentials?"
)

# Each pattern keeps group 1 (a recognisable prefix) and masks the rest.
# Flags are scoped ("(?i:...)") so the patterns can also be joined into one
# alternation, used as a quick test before the substitutions run.
_BUILTIN: tuple[tuple[str, str], ...] = (
    # OpenAI / Anthropic style keys: sk-..., sk-proj-..., sk-ant-...
    ("api key", _START + r"(sk-)" + _NOT_MASKED + r"[A-Za-z0-9_\-]{12,}"),
    # Authorization headers and bare bearer tokens
    ("bearer token", r"(?i:\b(bearer\s+))" + _NOT_MASKED + r"[A-Za-z0-9\-._~+/]{8,}=*"),
    ("basic auth", r"(?i:\b(basic\s+))" + _NOT_MASKED + r"[A-Za-z0-9+/]{12,}=*"),
    # AWS access key ids (AKIA = long-term, ASIA = temporary)
    (
        "aws key id",
        _START + r"((?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA))[A-Z0-9]{16}" + _END,
    ),
    # AWS secret access keys, when named
    (
        "aws secret",
        r"(?i:(aws_?secret_?(?:access_?)?key\s*[=:]\s*['\"]?))"
        + _NOT_MASKED
        + r"[A-Za-z0-9/+=]{40}",
    ),
    # GitHub, GitLab, Slack, Google, Stripe, Hugging Face, npm tokens
    ("github token", _START + r"(gh[pousr]_)[A-Za-z0-9]{20,}"),
    ("github token", _START + r"(github_pat_)[A-Za-z0-9_]{20,}"),
    ("gitlab token", _START + r"(glpat-)[A-Za-z0-9_\-]{20,}"),
    ("slack token", _START + r"(xox[abposr]-)[A-Za-z0-9\-]{10,}"),
    ("google key", _START + r"(AIza)[A-Za-z0-9_\-]{35}"),
    ("stripe key", _START + r"((?:sk|rk|pk)_(?:live|test)_)[A-Za-z0-9]{16,}"),
    ("hugging face token", _START + r"(hf_)[A-Za-z0-9]{30,}"),
    ("npm token", _START + r"(npm_)[A-Za-z0-9]{36}"),
    # JSON web tokens: three base64url parts, the first two starting with eyJ
    ("jwt", r"\b(eyJ)[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]+"),
    # password=..., SECRET_KEY: ..., api_key="...", db_password=..., token=...
    # (the value runs up to a delimiter)
    (
        "credential",
        r"(?i:((?:"
        + _CREDENTIAL_WORDS
        + r")[A-Za-z0-9_\-]{0,20}[\"']?\s*[=:]\s*[\"']?))"
        + _NOT_MASKED
        + r"(?!(?i:bearer|basic)\s)[^\s\"',;&}\]]{3,}",
    ),
    # URLs with credentials: scheme://user:password@host
    ("url password", r"(?i:(\b[a-z][a-z0-9+.\-]*://[^\s:/@]+:))" + _NOT_MASKED + r"[^\s@/]+(?=@)"),
    # PEM private keys (up to their end line, or the end of a truncated text)
    (
        "private key",
        r"(-----BEGIN [A-Z ]*PRIVATE KEY-----)"
        + _NOT_MASKED
        + r"[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)",
    ),
)

#: The kinds of secret masked by default, for documentation and error messages.
BUILTIN_KINDS: tuple[str, ...] = tuple(dict.fromkeys(kind for kind, _ in _BUILTIN))


class _Settings:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.enabled = True
        self.builtin: list[re.Pattern[str]] = [re.compile(p) for _, p in _BUILTIN]
        # One alternation of every builtin pattern: most strings (".events",
        # "[3]", "list") match none, and one search settles that.
        self.any_builtin = re.compile("|".join(f"(?:{p})" for _, p in _BUILTIN))
        self.extra: list[re.Pattern[str]] = []
        #: bumped on every change, so cached results never outlive the settings
        self.generation = 0


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
        _settings.extra.extend(compiled)
        _settings.generation += 1


def masking_enabled() -> bool:
    """Whether secret masking is on for the process (see ``set_masking``)."""
    return _settings.enabled


def _replace(match: re.Match[str]) -> str:
    prefix = match.group(1) if match.re.groups >= 1 and match.group(1) else ""
    return prefix + MASK


def _mask_all(text: str) -> str:
    if _settings.any_builtin.search(text) is not None:
        for pattern in _settings.builtin:
            text = pattern.sub(_replace, text)
    for pattern in _settings.extra:
        text = pattern.sub(_replace, text)
    return text


@functools.lru_cache(maxsize=8192)
def _mask_short(text: str, generation: int) -> str:
    return _mask_all(text)


def mask(text: str, enabled: bool | None = None) -> str:
    """``text`` with every secret-looking substring replaced by ``[masked]``.

    ``enabled`` overrides the process-wide setting for this call.
    """
    if not (_settings.enabled if enabled is None else enabled):
        return text
    if len(text) <= 200:  # labels repeat: ".next", "[0]", "list"
        return _mask_short(text, _settings.generation)
    return _mask_all(text)


def mask_data(data: object, enabled: bool | None = None) -> object:
    """A copy of JSON-ready ``data`` with every string (keys too) masked.

    Works without recursion, so data nested any depth is fine.
    """
    if not (_settings.enabled if enabled is None else enabled):
        return data

    def convert(value: object) -> object:
        if isinstance(value, str):
            return mask(value, True)
        if isinstance(value, dict):
            out_dict: dict[object, object] = {}
            work.append((value, out_dict))
            return out_dict
        if isinstance(value, list | tuple):
            out_list: list[object] = []
            work.append((value, out_list))
            return out_list
        return value

    work: list[tuple[object, dict[object, object] | list[object]]] = []
    result = convert(data)
    while work:
        source, target = work.pop()
        if isinstance(target, dict):
            for key, value in source.items():  # type: ignore[attr-defined]
                target[convert(key)] = convert(value)
        else:
            for value in source:  # type: ignore[attr-defined]
                target.append(convert(value))
    return result


# -- bounded, visible text ---------------------------------------------------------

_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(ch: str) -> str:
    if ch in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[ch]
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape_controls(text: str) -> str:
    """``text`` with control, format and separator characters written as escapes.

    A terminal escape sequence (``\\x1b[2J``), a newline that would fake a
    line of the report, a right-to-left override (``\\u202e``) or a zero-width
    space are shown as the backslash escapes Python would write; every other
    character is kept.
    """
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape_char(ch) for ch in text)


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending in ``…`` when cut."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)] + ELLIPSIS


def bound(text: str, limit: int = JSON_LIMIT, enabled: bool | None = None) -> str:
    """``text`` masked and truncated to ``limit`` characters, control characters kept.

    For data (JSON): the characters stay what they were, and JSON escapes
    what needs escaping. Cheap for huge strings: only the start is examined.
    """
    if len(text) > limit + _MASK_MARGIN:
        text = text[: limit + _MASK_MARGIN]
    return truncate(mask(text, enabled), limit)


def clean(text: str, limit: int, enabled: bool | None = None) -> str:
    """``text`` masked, with control characters escaped, truncated to ``limit``.

    For people (text, SVG, HTML). Markup escaping (``<``, ``&``, quotes) is
    the job of each renderer, on top of this. An escape is never cut in half.
    """
    if len(text) > limit + _MASK_MARGIN:
        text = text[: limit + _MASK_MARGIN]
    text = mask(text, enabled)
    if len(text) <= limit and text.isprintable():
        return text
    pieces: list[str] = []
    used = 0
    last = len(text) - 1
    for i, ch in enumerate(text):
        piece = ch if ch.isprintable() else _escape_char(ch)
        if used + len(piece) > limit - 1 and not (i == last and used + len(piece) <= limit):
            return "".join(pieces) + ELLIPSIS
        pieces.append(piece)
        used += len(piece)
    return "".join(pieces)
