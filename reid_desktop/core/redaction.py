"""Camera URLs without their secrets: for logs, errors, thread names, the database, exports and settings.

Operators paste URLs as their camera vendor wrote them, which are often not valid URLs:
``rtsp://admin:pa#ss/w@rd@10.0.0.7/stream`` (a password with ``#``, ``/`` and ``@``),
``http://cam/snapshot.cgi?user=admin&pwd=secret``, XMEye's ``/user=admin_password=x_channel=1``,
or schemes nobody listed (``rtspt``, ``rtmps``, ``srt``). A standard URL parser cuts the first at
``#`` and never sees the credentials. So this module parses the way that never leaks:

- user information runs to the *last* ``@``, even past ``/``, ``?`` or ``#`` (a password may hold them);
- but when an ``@`` comes after such a character *and* an ``=`` comes before it, the ``@`` may as well sit
  inside a parameter value (``?pwd=p@ss``): then all of it is hidden, since nothing tells a host or a
  parameter from the rest of a secret;
- the first parameter whose name sounds like a secret (user, pass, pwd, token, auth, key, secret, sig,
  session, cred) loses its value, and everything after it is hidden too.

It may hide a little too much (an ``@`` in a path), never too little.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

MASK = "***"
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://(?P<rest>.*)$", re.DOTALL)
_SCHEME_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_SECRET_NAME = re.compile(r"user|usr|login|pass|pwd|token|auth|key|secret|sig|session|cred", re.IGNORECASE)
_CLEAN_NAME = re.compile(r"^[A-Za-z0-9.\-]+$")
_PARAM_SEPARATORS = re.compile(r"([/?&;#_])")
_AUTHORITY_END = re.compile(r"[/?#]")


def is_url(uri: str) -> bool:
    """``scheme://...`` of any scheme (a Windows path such as ``C:\\x`` is not one)."""
    return _SCHEME.match(uri.strip()) is not None


@dataclass(frozen=True)
class _Url:
    """A URL as typed. ``certain`` is False when the host cannot be told apart from a secret (then hide both)."""

    scheme: str
    userinfo: str
    host: str
    tail: str  # path, query and fragment
    certain: bool


def _parse(uri: str) -> _Url | None:
    match = _SCHEME.match(uri.strip())
    if match is None:
        return None
    scheme, rest = match["scheme"], match["rest"]
    end = _AUTHORITY_END.search(rest)
    first_sep = end.start() if end else len(rest)
    last_at = rest.rfind("@")
    if last_at < 0:
        return _Url(scheme, "", rest[:first_sep], rest[first_sep:], True)
    after = rest[last_at + 1:]
    cut = _AUTHORITY_END.search(after)
    host, tail = (after[:cut.start()], after[cut.start():]) if cut else (after, "")
    if last_at < first_sep or "=" not in rest[:last_at]:
        return _Url(scheme, rest[:last_at], host, tail, True)
    # an "@" after the authority with a "=" before it: maybe user information, maybe inside a parameter value,
    # so what follows it may be the rest of a secret
    return _Url(scheme, rest[:last_at], "", "", False)


def _redact_parameters(text: str) -> str:
    """Hide the values of secret-sounding ``name=value`` parameters in a path, query or fragment, and everything
    after the first one: a value typed raw may hold ``&``, ``?``, ``#`` or ``x=``, so nothing after it is sure."""
    out: list[str] = []
    hiding = False
    for token in _PARAM_SEPARATORS.split(text):
        if _PARAM_SEPARATORS.fullmatch(token) or not token:
            out.append(token)
        elif hiding:
            out.append(MASK)
        else:
            name, eq, _ = token.partition("=")
            hiding = bool(eq) and _CLEAN_NAME.match(unquote(name)) is not None and \
                _SECRET_NAME.search(unquote(name)) is not None
            out.append(f"{name}={MASK}" if hiding else token)
    return "".join(out)


def redact(uri: str) -> str:
    """The URI safe to show anywhere: user information becomes ``***`` and secret parameters lose their values.

    Plain file paths are returned unchanged.
    """
    url = _parse(uri)
    if url is None:
        return uri
    if not url.certain:
        return f"{url.scheme}://{MASK}"
    return f"{url.scheme}://{MASK + '@' if url.userinfo else ''}{url.host}{_redact_parameters(url.tail)}"


def redact_text(text: str) -> str:
    """Every URL inside free text (an error message, a log line) redacted.

    A password typed raw may hold spaces, so the user information of a URL in text runs to the last ``@``
    of the text: that may hide more than the URL, never less.
    """
    out: list[str] = []
    pos = 0
    for match in _SCHEME_IN_TEXT.finditer(text):
        if match.start() < pos:
            continue
        out.append(text[pos:match.start()])
        rest = text[match.end():]
        at = rest.rfind("@")
        after = rest[at + 1:] if at >= 0 else rest
        url_tail = re.match(r"\S*", after).group(0)  # type: ignore[union-attr]
        out.append(redact(f"{match.group(0)}{MASK + '@' if at >= 0 else ''}{url_tail}"))
        pos = match.end() + (at + 1 if at >= 0 else 0) + len(url_tail)
    out.append(text[pos:])
    return "".join(out)


def has_secrets(uri: str) -> bool:
    return redact(uri) != uri


def strip_secrets(uri: str) -> str:
    """The URL with no user information and empty secret values: what may be saved in a settings file."""
    return redact(uri).replace(f"://{MASK}@", "://", 1).replace(f"={MASK}", "=").replace(MASK, "")


def stream_host(uri: str) -> str:
    """The host (and port) of a URL, without credentials: a camera's default name ("" when unsure)."""
    url = _parse(uri)
    return url.host if url is not None and url.certain else ""


def split_credentials(uri: str) -> tuple[str, str, str]:
    """``(URL without user information, user, password)``; percent-encoding in the credentials is undone.

    A URL whose user information cannot be told apart from its parameters is returned as it is.
    """
    url = _parse(uri)
    if url is None or not url.userinfo or not url.certain:
        return uri, "", ""
    user, _, password = url.userinfo.partition(":")
    return f"{url.scheme}://{url.host}{url.tail}", unquote(user), unquote(password)


def join_credentials(uri: str, user: str, password: str) -> str:
    """The URL to open: credentials percent-encoded into the authority (FFmpeg decodes them)."""
    if not user and not password:
        return uri
    match = _SCHEME.match(uri.strip())
    if match is None:
        return uri
    rest = match["rest"]
    end = _AUTHORITY_END.search(rest)
    authority, tail = (rest[:end.start()], rest[end.start():]) if end else (rest, "")
    userinfo = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    return f"{match['scheme']}://{userinfo}@{authority.rpartition('@')[2]}{tail}"


class RedactingFilter(logging.Filter):
    """Redacts URLs in every log record that passes a handler: the last line of defence, not the first."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "://" in message:
            record.msg, record.args = redact_text(message), None
        return True
