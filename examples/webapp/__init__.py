"""An example web application embedding mfa_flow: ``python -m examples.webapp`` (docs/webapp.md)."""
