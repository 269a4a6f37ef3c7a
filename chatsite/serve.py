"""Serves chatsite under Daphne on the configured PORT: `python -m chatsite.serve`.

The port comes from the settings (environment, then .env), the same value the demo
gateway's URL is built from, so the two can never disagree.
"""

import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

from daphne.cli import CommandLineInterface
from django.conf import settings

if __name__ == "__main__":
    host = os.environ.get("BIND", "127.0.0.1")
    print(f"chatsite: http://{host}:{settings.PORT}/", flush=True)
    CommandLineInterface().run(
        ["--bind", host, "--port", str(settings.PORT), *sys.argv[1:], "chatsite.asgi:application"]
    )
