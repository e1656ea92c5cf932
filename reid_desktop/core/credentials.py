"""Camera secrets live in the OS keyring (Secret Service, macOS Keychain, Windows Credential Locker), never in
settings files, databases, logs or command lines.

The GUI stores a camera's whole URL (credentials and secret parameters included) under the camera's name
and saves only :func:`~reid_desktop.core.redaction.strip_secrets` of it in its settings. The headless
``process`` command takes a password from the environment or from the same keyring entry, so it never has
to appear in ``ps`` or the shell history. Without a keyring a secret is used but not kept.
"""

from __future__ import annotations

import logging
import os
import re

from reid_desktop.core.redaction import is_url, join_credentials, redact, split_credentials

log = logging.getLogger(__name__)

SERVICE = "reid-desktop"
PASSWORD_VARIABLE = "REID_DESKTOP_PASSWORD"


def _account(source_name: str) -> str:
    return f"source:{redact(source_name)}"


def save_secret_url(source_name: str, url: str) -> bool:
    """Keep a camera's full URL in the keyring; False (and a log line without the secret) when there is none."""
    try:
        import keyring

        keyring.set_password(SERVICE, _account(source_name), url)
        return True
    except Exception as exc:  # keyring.errors.* or a missing backend: never fatal, never log the secret
        log.warning("no OS keyring available (%s): the credentials of %s are not kept", type(exc).__name__,
                    redact(source_name))
        return False


def _keyring_entry(source_name: str) -> str | None:
    try:
        import keyring

        return keyring.get_password(SERVICE, _account(source_name))
    except Exception as exc:
        log.warning("cannot read the OS keyring (%s)", type(exc).__name__)
        return None


def load_secret_url(source_name: str, saved_uri: str, username: str = "") -> str | None:
    """A camera's full URL from the keyring. Entries of older versions hold only the password of ``saved_uri``."""
    value = _keyring_entry(source_name)
    if value is None or is_url(value):
        return value
    return join_credentials(saved_uri, username, value)


def forget_secret(source_name: str) -> None:
    try:
        import keyring

        keyring.delete_password(SERVICE, _account(source_name))
    except Exception:  # nothing stored, or no keyring: nothing to forget
        pass


def environment_variable(source_name: str) -> str:
    """``REID_DESKTOP_PASSWORD_<NAME>``: the camera name upper-cased, other characters as ``_``."""
    return f"{PASSWORD_VARIABLE}_{re.sub(r'[^A-Za-z0-9]', '_', source_name).upper()}"


def complete_url(source_name: str, uri: str) -> str:
    """A stream URL that names a user but no password gets one from the environment or the keyring.

    Looked up in this order: ``REID_DESKTOP_PASSWORD_<NAME>``, ``REID_DESKTOP_PASSWORD``, then the keyring
    entry the window saved for a camera of that name. Anything else is returned unchanged.
    """
    clean, user, password = split_credentials(uri)
    if not user or password:
        return uri
    found = os.environ.get(environment_variable(source_name)) or os.environ.get(PASSWORD_VARIABLE)
    if not found:
        saved = _keyring_entry(source_name)
        found = split_credentials(saved)[2] if saved and is_url(saved) else saved
    return join_credentials(clean, user, found) if found else uri
