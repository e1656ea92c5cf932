"""Camera secrets never show: property-based tests of the redaction over URLs as operators really paste them."""

from __future__ import annotations

import logging
import threading
import time
from urllib.parse import quote, unquote

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from reid_desktop.core.capture.sources import SourceKind, SourceSpec, VideoSource
from reid_desktop.core.config import SourceOptions
from reid_desktop.core.credentials import complete_url, environment_variable, save_secret_url
from reid_desktop.core.redaction import (
    RedactingFilter,
    join_credentials,
    redact,
    redact_text,
    split_credentials,
    stream_host,
    strip_secrets,
)

MARKER = "Zq7xK"  # every generated secret contains it, so "the secret leaked" is a plain substring test
SCHEMES = st.sampled_from(["rtsp", "rtsps", "rtspt", "rtmp", "rtmps", "http", "https", "srt", "udp", "onvif",
                           "x-vendor+rtsp"])
HOSTS = st.from_regex(r"\A[a-z0-9][a-z0-9.\-]{0,20}(:[0-9]{2,5})?\Z")
PATHS = st.from_regex(r"\A(/[A-Za-z0-9._\-]{0,12}){0,4}\Z")
TYPED = st.characters(blacklist_categories=("Cs",))  # anything a keyboard or a paste can produce
SECRETS = st.text(TYPED, max_size=12).map(lambda s: s[: len(s) // 2] + MARKER + s[len(s) // 2:])
SECRET_KEYS = st.sampled_from(["user", "username", "pwd", "password", "passwd", "pass", "token", "access_token",
                               "auth", "authorization", "apikey", "api_key", "key", "secret", "sig", "signature",
                               "session", "credentials", "PassWord", "Token"])
PLAIN_KEYS = st.sampled_from(["channel", "subtype", "res", "fps", "stream", "profile", "ch"])


def leaks(text: str, secret: str) -> bool:
    encoded = quote(secret, safe="")
    return any(part and part in text for part in (secret, encoded, MARKER))


RAW_USERS = st.text(alphabet=st.characters(blacklist_characters=":@%", blacklist_categories=("Cs",)),
                    max_size=10)  # a typed user holds no : @ %


@given(SCHEMES, RAW_USERS, SECRETS, HOSTS, PATHS)
@example("rtsp", "admin", f"pa#ss/w@rd{MARKER}", "10.0.0.7:554", "/Streaming/101")
@example("rtspt", "admin", f"{MARKER}?x=1", "cam", "")
@example("rtsp", "", f"p/{MARKER}=b", "host", "/x")
def test_credentials_in_the_authority_never_show(scheme: str, user: str, password: str, host: str,
                                                 path: str) -> None:
    raw = f"{scheme}://{user}:{password}@{host}{path}"  # as typed: nothing encoded
    encoded = join_credentials(f"{scheme}://{host}{path}", user, password)  # as the app builds it
    for url in (raw, encoded):
        for shown in (redact(url), strip_secrets(url), redact_text(f"cannot open {url} now"), stream_host(url)):
            assert not leaks(shown, password), shown
    assert split_credentials(encoded) == (f"{scheme}://{host}{path}", user, password)
    typed = split_credentials(raw)
    userinfo = f"{user}:{password}"
    if typed[1:] == ("", ""):  # told apart from a parameter only when not both a "=" and a "/", "?" or "#"
        assert "=" in userinfo and any(c in userinfo for c in "/?#")
    else:
        assert typed[1:] == (user, unquote(password))  # FFmpeg decodes %xx in typed ones too


@given(SCHEMES, HOSTS, PATHS, SECRET_KEYS, SECRETS, st.lists(st.tuples(PLAIN_KEYS, st.from_regex(r"\A[0-9a-z]{0,4}\Z")),
                                                             max_size=3), st.booleans())
@example("http", "cam", "/snapshot.cgi", "pwd", f"se&cret{MARKER}", [("res", "1")], False)
@example("rtsp", "cam", "/x", "password", f"a#b{MARKER}", [], False)
@example("rtsp", "0", "", "user", f"@{MARKER}0", [], False)
@example("http", "cam", "/x", "pwd", f"a@b&c={MARKER}", [], False)
def test_secret_parameters_never_show(scheme: str, host: str, path: str, key: str, secret: str,
                                      plain: list[tuple[str, str]], percent_encode: bool) -> None:
    value = quote(secret, safe="") if percent_encode else secret
    query = "&".join([f"{k}={v}" for k, v in plain] + [f"{key}={value}"])
    url = f"{scheme}://{host}{path}?{query}"
    for shown in (redact(url), strip_secrets(url)):
        assert not leaks(shown, secret), shown
    for k, v in plain:  # what is not secret stays readable (unless an "@" makes the whole URL doubtful)
        assert f"{k}={v}" in redact(url) or "@" in value


@pytest.mark.parametrize(("url", "shown"), [
    ("rtsp://admin:pa#ss/w@rd@10.0.0.7:554/stream", "rtsp://***@10.0.0.7:554/stream"),
    ("http://cam/snapshot.cgi?res=1&user=admin&pwd=secret", "http://cam/snapshot.cgi?res=1&user=***&***"),
    ("rtsp://10.0.0.1:554/user=admin_password=tlJwpbo6_channel=1_stream=0.sdp", "rtsp://10.0.0.1:554/user=***_***_***_***"),
    ("srt://host:9000?latency=200&passphrase=abc", "srt://host:9000?latency=200&passphrase=***"),
    ("http://cam/x?pwd=a&b=Zq7xK#c=d", "http://cam/x?pwd=***&***#***"),
    ("http://cam/x?pwd=a@b&c=Zq7xK", "http://***"),  # an "@" inside a value: nothing after "://" is sure
    ("rtsp://host/x", "rtsp://host/x"),
    ("/videos/with@sign.mp4", "/videos/with@sign.mp4"),
])
def test_redaction_of_real_camera_urls(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_any_scheme_is_a_stream_named_after_its_host() -> None:
    for url in ("rtspt://admin:x@10.1.2.3/live", "rtmps://u:p@media.example:443/app", "srt://10.0.0.2:9000?pass=y"):
        spec = SourceSpec(url)
        assert spec.kind is SourceKind.STREAM
        assert spec.source_id in ("10.1.2.3", "media.example:443", "10.0.0.2:9000")
    assert SourceSpec("C:\\videos\\lobby.mp4").kind is SourceKind.FILE


def test_thread_names_and_log_lines_carry_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    url = f"rtsp://admin:{MARKER}@127.0.0.1:9/cam?token={MARKER}"
    source = VideoSource(SourceSpec(url, name=url), SourceOptions(reconnect_max_attempts=1, open_timeout_s=1.0))
    source.start()
    names = [t.name for t in threading.enumerate()]
    deadline = time.monotonic() + 10
    while source.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(MARKER in name for name in names)
    assert MARKER not in source.reason and "***" in source.reason
    logger = logging.getLogger("test.redaction")
    handler = logging.StreamHandler()
    handler.addFilter(RedactingFilter())
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "could not open %s", (url,), None)
    handler.filter(record)
    assert MARKER not in record.getMessage() and "rtsp://***@127.0.0.1:9/cam?token=***" in record.getMessage()


def test_cli_passwords_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(environment_variable("front-door"), "from env!")
    assert environment_variable("front-door") == "REID_DESKTOP_PASSWORD_FRONT_DOOR"
    assert complete_url("front-door", "rtsp://admin@cam/s") == "rtsp://admin:from%20env%21@cam/s"
    assert complete_url("front-door", "rtsp://admin:given@cam/s") == "rtsp://admin:given@cam/s"  # kept as given
    assert complete_url("yard", "rtsp://admin@cam/s") == "rtsp://admin@cam/s"  # nothing for this camera
    monkeypatch.setenv("REID_DESKTOP_PASSWORD", "shared")
    assert complete_url("yard", "rtsp://admin@cam/s") == "rtsp://admin:shared@cam/s"


@settings(max_examples=300)
@given(st.text())
def test_redaction_never_fails_and_is_stable(text: str) -> None:
    once = redact(text)
    assert redact(once) == once
    assert redact_text(redact_text(text)) == redact_text(text)


def test_cli_passwords_come_from_the_keyring_entry_the_window_saved(memory_keyring,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REID_DESKTOP_PASSWORD", raising=False)
    assert save_secret_url("gate", "rtsp://admin:s3cret@cam/s")
    assert complete_url("gate", "rtsp://admin@cam/s") == "rtsp://admin:s3cret@cam/s"
    memory_keyring.secrets[("reid-desktop", "source:yard")] = "old pw"  # an entry of the previous version
    assert complete_url("yard", "rtsp://admin@cam/s") == "rtsp://admin:old%20pw@cam/s"
