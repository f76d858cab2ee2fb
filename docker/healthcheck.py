#!/usr/bin/env python3
"""The image's HEALTHCHECK: is the ``dcf serve`` of this container ready (model loaded and warm)?

Asks ``/readyz`` at the address the server was configured with, ``DCF_HOST`` and ``DCF_PORT``
(the container's settings; 0.0.0.0 and :: are asked on loopback). Exit status 0 when it answers
200, 1 otherwise, with one line saying what it got. The standard library only: importing ``dcf``
(and torch) at every check would cost a second of CPU each time.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def readyz_url(environ: dict[str, str]) -> str:
    host = environ.get("DCF_HOST", "127.0.0.1").strip()
    host = WILDCARDS.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{environ.get('DCF_PORT', '8000').strip()}/readyz"


def main() -> int:
    url = readyz_url(dict(os.environ))
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            print(f"{url}: {response.status}")
            return 0
    except urllib.error.HTTPError as exc:
        print(f"{url}: {exc.code} {exc.read(200).decode(errors='replace')}")
    except (OSError, ValueError) as exc:
        print(f"{url}: {exc}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
