"""``python -m mfa_flow ...``: the ``mfa-flow`` command line."""

from mfa_flow.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
