"""``python -m examples.webapp``: the example application on http://127.0.0.1:8000/ (settings: docs/webapp.md)."""

from __future__ import annotations

import uvicorn

from examples.webapp.app import create_app
from examples.webapp.settings import Settings


def main() -> None:
    settings = Settings.from_env()
    print(f"mfa_flow example webapp, {settings.mode} mode, data in {settings.data_dir}: "
          f"open http://127.0.0.1:{settings.port}/", flush=True)
    uvicorn.run(create_app(settings), host="127.0.0.1", port=settings.port)  # loopback only


if __name__ == "__main__":
    main()
