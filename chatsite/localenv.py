"""Makes sure the local .env holds the secrets `make run` needs; never changes one it has.

    python -m chatsite.localenv [.env]

SECRET_KEY and FIELD_ENCRYPTION_KEYS are generated once and kept: a new
FIELD_ENCRYPTION_KEYS would make the stored API keys unreadable.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

from cryptography.fernet import Fernet
from dotenv import dotenv_values

GENERATORS = {
    "SECRET_KEY": lambda: secrets.token_urlsafe(50),
    "FIELD_ENCRYPTION_KEYS": lambda: Fernet.generate_key().decode(),
}


def ensure(path: Path) -> list[str]:
    """Append the missing secrets to `path`; returns their names."""
    present = dotenv_values(path) if path.exists() else {}
    missing = [name for name in GENERATORS if not present.get(name)]
    if missing:
        text = path.read_text() if path.exists() else "# Local settings for chatsite; kept out of git.\n"
        if text and not text.endswith("\n"):
            text += "\n"
        text += "".join(f"{name}={GENERATORS[name]()}\n" for name in missing)
        path.write_text(text)
        path.chmod(0o600)
    return missing


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else ".env")
    for name in ensure(target):
        print(f"Created {name} in {target} (kept out of git).")
