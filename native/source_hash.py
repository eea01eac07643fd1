"""Prints the hash of native/'s sources: deploy/local/stack rebuilds the extension when it
changes, and the test session refuses to test a build older than the tree (tests/conftest.py)."""

import hashlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
MARKER = ".streams-native-sha256"  # in the virtualenv the extension was installed into


def source_hash() -> str:
    files = [HERE / name for name in ("Cargo.toml", "Cargo.lock", "pyproject.toml", "streams_native.pyi")]
    files += sorted((HERE / "src").glob("*.rs"))
    return hashlib.sha256(b"".join(path.read_bytes() for path in files)).hexdigest()


if __name__ == "__main__":
    print(source_hash())
