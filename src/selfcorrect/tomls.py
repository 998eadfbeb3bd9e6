"""Reading the project's TOML files (condition libraries, verdict rules, sweep plans): one-line
errors for a missing file, bytes that are not UTF-8 and text that is not TOML."""

from __future__ import annotations

import tomllib
from pathlib import Path

from selfcorrect.errors import SelfCorrectError


def read_toml(path: Path, what: str) -> tuple[bytes, dict]:
    """(the file's bytes, its data); `what` names it in errors ("plan", "rules", ...)."""
    try:
        raw = path.read_bytes()
        return raw, tomllib.loads(raw.decode("utf-8"))
    except OSError as exc:
        raise SelfCorrectError(f"cannot read {what} {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SelfCorrectError(f"{what} {path} is not valid TOML (not UTF-8 text)") from None
    except tomllib.TOMLDecodeError as exc:
        raise SelfCorrectError(f"{what} {path} is not valid TOML: {exc}") from None
