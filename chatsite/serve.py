"""Serves chatsite under Daphne on the configured PORT: `python -m chatsite.serve`.

The port comes from the settings (environment, then .env), the same value the demo
gateway's URL is built from, so the two can never disagree; so does the limit on one
WebSocket message, which the socket's fragments are sized by (fragments.py).
"""

import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

from daphne.cli import CommandLineInterface
from django.conf import settings


def daphne_arguments(host: str, extra: list[str]) -> list[str]:
    limit = str(settings.WEBSOCKET_MAX_MESSAGE_BYTES)
    return [
        *("--bind", host, "--port", str(settings.PORT)),
        *("--websocket-max-message-size", limit, "--websocket-max-frame-size", limit),
        *extra,
        "chatsite.asgi:application",
    ]


if __name__ == "__main__":
    host = os.environ.get("BIND", "127.0.0.1")
    print(f"chatsite: http://{host}:{settings.PORT}/", flush=True)
    CommandLineInterface().run(daphne_arguments(host, sys.argv[1:]))
