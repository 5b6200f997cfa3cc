"""Run a twin with uvicorn for subprocess tests: ``python -m tests.sensors._server PORT``."""

import sys

import uvicorn

from citytwin.api.app import create_app
from citytwin.settings import load_settings

if __name__ == "__main__":
    uvicorn.run(create_app(load_settings()), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
