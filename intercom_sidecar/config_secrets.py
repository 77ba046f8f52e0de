"""Secrets: the Intercom token, the identity secret, the gRPC auth token and the dead-letter key, read from files
(preferred) or the environment, checked, and held in `Secret`, which never shows its value. Errors name the
variable and never quote the value."""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from pathlib import Path

from intercom_sidecar.errors import ConfigError

__all__ = [
    "FileWatch",
    "Secret",
    "checked_secret",
    "dead_letter_key",
    "dead_letter_key_bytes",
    "file_stamp",
    "read_auth_token",
    "read_auth_token_file",
    "read_dead_letter_key",
    "read_secret",
    "read_token",
    "read_token_file",
]


class Secret:
    """A string that never shows itself in `repr`, `str`, logs or tracebacks. Read it with `reveal()`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


_MIN_AUTH_TOKEN_CHARS = 16


def read_auth_token(env: Mapping[str, str]) -> Secret | None:
    key = "INTERCOM_SIDECAR_AUTH_TOKEN"
    token = read_secret(env, key, f"{key}_FILE")
    if token is not None and len(token.reveal()) < _MIN_AUTH_TOKEN_CHARS:
        name = f"{key}_FILE" if env.get(f"{key}_FILE", "").strip() else key
        raise ConfigError(name, f"is too short to be a secret: use at least {_MIN_AUTH_TOKEN_CHARS} characters")
    return token


def read_auth_token_file(path: Path) -> Secret:
    """The gRPC auth token in `path` now (for re-reading a rotated file); ConfigError if it is unusable."""
    token = read_auth_token({"INTERCOM_SIDECAR_AUTH_TOKEN_FILE": str(path)})
    assert token is not None  # an empty file is a ConfigError
    return token


def read_dead_letter_key(path: Path) -> Secret:
    """The dead-letter key in `path` (for the `dlq` command); ConfigError if it is unusable."""
    key = dead_letter_key({_DEAD_LETTER_KEY_FILE: str(path)})
    assert key is not None
    return key


_DEAD_LETTER_KEY_FILE = "INTERCOM_SIDECAR_DEAD_LETTER_KEY_FILE"


def dead_letter_key(env: Mapping[str, str]) -> Secret | None:
    """32 random bytes, base64 (`openssl rand -base64 32`), read from a file only: a key is never an environment
    variable (those show up in `kubectl describe` and process listings). Errors never quote the file."""
    path = env.get(_DEAD_LETTER_KEY_FILE, "").strip()
    if not path:
        return None
    key = read_secret({_DEAD_LETTER_KEY_FILE: path}, _DEAD_LETTER_KEY_FILE, _DEAD_LETTER_KEY_FILE)
    assert key is not None  # the file is set, so it was read (or raised)
    try:
        dead_letter_key_bytes(key.reveal())
    except ValueError:
        raise ConfigError(
            _DEAD_LETTER_KEY_FILE, "must hold 32 random bytes in base64 (e.g. `openssl rand -base64 32`)"
        ) from None
    return key


def dead_letter_key_bytes(text: str) -> bytes:
    """The 32 bytes of a dead-letter key file's contents (standard or URL-safe base64); ValueError otherwise."""
    raw = base64.b64decode(text.strip().replace("-", "+").replace("_", "/"), validate=True)
    if len(raw) != 32:
        raise ValueError("a dead-letter key is 32 bytes")
    return raw


def read_secret(env: Mapping[str, str], key: str, file_key: str) -> Secret | None:
    """The secret from the file named by `file_key` (which wins), else from `key`; None when neither is set."""
    path = env.get(file_key, "").strip()
    if path:
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(file_key, f"cannot read {path!r}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(file_key, f"{path!r} is not UTF-8 text") from None
        if not value:
            raise ConfigError(file_key, f"{path!r} is empty")
        return checked_secret(file_key, value)
    value = env.get(key, "").strip()
    return checked_secret(key, value) if value else None


def checked_secret(key: str, value: str) -> Secret:
    """Tokens are printable ASCII without spaces; anything else (a second line, say) would end up in an HTTP
    header error that quotes it, so it is refused here, without showing it."""
    if not all("\x21" <= char <= "\x7e" for char in value):
        raise ConfigError(key, "contains spaces, control or non-ASCII characters (is there a second line?)")
    return Secret(value)


def file_stamp(path: Path) -> tuple[int, int, int, int] | None:
    """What tells a secret file's content changed, cheaply: (device, inode, size, modification time); None when the
    file cannot be looked at. A Kubernetes Secret volume swaps files atomically, which changes the inode."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns)


_NOT_LOOKED = (-1, -1, -1, -1)


class FileWatch:
    """Whether a secret file may hold something new since it was last looked at: its `file_stamp` moved. Each
    change answers True once, so a file that stays broken is read (and reported) once, not on every look.

    The first look always answers True: the value in use was read before the watch began (when the
    configuration was loaded), so an edit in between, or a read that caught the file half written, would otherwise
    go unseen until the file changed again. Callers compare what they read with what they hold, so reading an
    unchanged file once more changes nothing. The stamp is taken before the caller reads, so a write that lands
    during the read moves the stamp again and is read at the next look."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int, int] | None = _NOT_LOOKED

    def changed(self) -> bool:
        stamp = file_stamp(self.path)
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        return True


def read_token_file(path: Path) -> Secret:
    """The token in `path` now (for re-reading a rotated token file); ConfigError if it is unusable."""
    return read_token({"INTERCOM_ACCESS_TOKEN_FILE": str(path)})


def read_token(env: Mapping[str, str]) -> Secret:
    token = read_secret(env, "INTERCOM_ACCESS_TOKEN", "INTERCOM_ACCESS_TOKEN_FILE")
    if token is None:
        raise ConfigError(
            "INTERCOM_ACCESS_TOKEN",
            "is not set (nor INTERCOM_ACCESS_TOKEN_FILE); to try the sidecar without an Intercom account, "
            "run `intercom-sidecar serve --fake-intercom` (or `make run`)",
        )
    return token
