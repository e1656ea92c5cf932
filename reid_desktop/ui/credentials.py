"""Stream credentials: split out of URLs, kept only in the OS keyring.

A camera URL like ``rtsp://admin:secret@10.0.0.7/stream`` is saved as ``rtsp://10.0.0.7/stream``
plus the user name; the password goes to the keyring (Secret Service, macOS Keychain, Windows
Credential Locker). Without a keyring the password is not kept and the operator is asked again.
"""

from __future__ import annotations

import logging
from urllib.parse import quote, unquote, urlsplit, urlunsplit

log = logging.getLogger(__name__)

SERVICE = "reid-desktop"


def split_credentials(uri: str) -> tuple[str, str, str]:
    """``(uri without user and password, user, password)``."""
    parts = urlsplit(uri)
    if not parts.scheme or "@" not in parts.netloc:
        return uri, "", ""
    userinfo, host = parts.netloc.rsplit("@", 1)
    user, _, password = userinfo.partition(":")
    clean = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return clean, unquote(user), unquote(password)


def join_credentials(uri: str, user: str, password: str) -> str:
    """The URI OpenCV opens: credentials percent-encoded into the authority."""
    if not user and not password:
        return uri
    parts = urlsplit(uri)
    userinfo = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    return urlunsplit((parts.scheme, f"{userinfo}@{parts.netloc}", parts.path, parts.query, parts.fragment))


def _account(source_name: str) -> str:
    return f"source:{source_name}"


def save_password(source_name: str, password: str) -> bool:
    """True when the keyring took it; False (and a log line without the secret) otherwise."""
    try:
        import keyring

        keyring.set_password(SERVICE, _account(source_name), password)
        return True
    except Exception as exc:  # keyring.errors.* or a missing backend: never fatal, never log the secret
        log.warning("no OS keyring available (%s): the password of %s is not kept", type(exc).__name__, source_name)
        return False


def load_password(source_name: str) -> str | None:
    try:
        import keyring

        return keyring.get_password(SERVICE, _account(source_name))
    except Exception as exc:
        log.warning("cannot read the OS keyring (%s)", type(exc).__name__)
        return None


def forget_password(source_name: str) -> None:
    try:
        import keyring

        keyring.delete_password(SERVICE, _account(source_name))
    except Exception:  # nothing stored, or no keyring: nothing to forget
        pass
