"""Camera URLs without their secrets: for logs, errors, thread names, the database, exports and settings.

Operators paste URLs as their camera vendor wrote them, which are often not valid URLs:
``rtsp://admin:pa#ss/w@rd@10.0.0.7/stream`` (a password with ``#``, ``/`` and ``@``),
``http://cam/snapshot.cgi?user=admin&pwd=secret``, XMEye's ``/user=admin_password=x_channel=1``,
or schemes nobody listed (``rtspt``, ``rtmps``, ``srt``). A standard URL parser cuts the first at
``#`` and never sees the credentials. So this module parses the way that never leaks: everything
between ``scheme://`` and the *last* ``@`` is user information, and every parameter whose name
sounds like a secret (user, pass, pwd, token, auth, key, secret, sig, session, cred) loses its
value, up to the next clean ``name=value``. It may hide a little too much (an ``@`` in a path), never
too little.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import quote, unquote

MASK = "***"
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://(?P<rest>.*)$", re.DOTALL)
_SCHEME_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_SECRET_NAME = re.compile(r"user|usr|login|pass|pwd|token|auth|key|secret|sig|session|cred", re.IGNORECASE)
_CLEAN_NAME = re.compile(r"^[A-Za-z0-9.\-]+$")
_PARAM_SEPARATORS = re.compile(r"([/?&;#_])")


def is_url(uri: str) -> bool:
    """``scheme://...`` of any scheme (a Windows path such as ``C:\\x`` is not one)."""
    return _SCHEME.match(uri.strip()) is not None


def split_url(uri: str) -> tuple[str, str, str] | None:
    """``(scheme, user information, the rest after it)`` of a URL, or None for a plain path.

    The user information is everything up to the last ``@`` (empty when there is none).
    """
    match = _SCHEME.match(uri.strip())
    if match is None:
        return None
    scheme, rest = match["scheme"], match["rest"]
    userinfo, at, after = rest.rpartition("@")
    return (scheme, userinfo, after) if at else (scheme, "", rest)


def _redact_parameters(text: str) -> str:
    """Hide the values of secret-sounding ``name=value`` parameters in a path, query or fragment."""
    out: list[str] = []
    hiding = False  # after a secret value, anything that is not a clean ``name=value`` may be part of it
    for token in _PARAM_SEPARATORS.split(text):
        if _PARAM_SEPARATORS.fullmatch(token) or not token:
            out.append(token)
            continue
        name, eq, _ = token.partition("=")
        clean = bool(eq) and _CLEAN_NAME.match(unquote(name)) is not None
        if clean and _SECRET_NAME.search(unquote(name)):
            out.append(f"{name}={MASK}")
            hiding = True
        elif clean:
            out.append(token)
            hiding = False
        else:
            out.append(MASK if hiding else token)
    return "".join(out)


def redact(uri: str) -> str:
    """The URI safe to show anywhere: user information becomes ``***`` and secret parameters lose their values.

    Plain file paths are returned unchanged.
    """
    parts = split_url(uri)
    if parts is None:
        return uri
    scheme, userinfo, after = parts
    host, tail = _host_and_tail(after)
    return f"{scheme}://{MASK + '@' if userinfo else ''}{host}{_redact_parameters(tail)}"


def _host_and_tail(after: str) -> tuple[str, str]:
    """Split what follows the user information into the host (and port) and the path, query and fragment."""
    cut = re.search(r"[/?#]", after)
    return (after[:cut.start()], after[cut.start():]) if cut else (after, "")


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
    """The host (and port) of a URL, without credentials: a camera's default name."""
    parts = split_url(uri)
    return _host_and_tail(parts[2])[0] if parts is not None else ""


def split_credentials(uri: str) -> tuple[str, str, str]:
    """``(URL without user information, user, password)``; percent-encoding in the credentials is undone."""
    parts = split_url(uri)
    if parts is None or not parts[1]:
        return uri, "", ""
    scheme, userinfo, after = parts
    user, _, password = userinfo.partition(":")
    return f"{scheme}://{after}", unquote(user), unquote(password)


def join_credentials(uri: str, user: str, password: str) -> str:
    """The URL to open: credentials percent-encoded into the authority (FFmpeg decodes them)."""
    if not user and not password:
        return uri
    parts = split_url(uri)
    if parts is None:
        return uri
    scheme, _, after = parts
    userinfo = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    return f"{scheme}://{userinfo}@{after}"


class RedactingFilter(logging.Filter):
    """Redacts URLs in every log record that passes a handler: the last line of defence, not the first."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "://" in message:
            record.msg, record.args = redact_text(message), None
        return True
