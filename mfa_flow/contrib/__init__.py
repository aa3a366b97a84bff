"""Optional integrations, each its own module and loaded only when imported (``import mfa_flow`` loads none):

- ``mfa_flow.contrib.opentelemetry``: ``EventMetrics``, an event sink counting decisions as OpenTelemetry
  metrics (``pip install 'mfa_flow[opentelemetry]'``);
- ``mfa_flow.contrib.logs``: ``EventLogger``, an event sink writing one stdlib ``logging`` record per event.

See docs/operating.md.
"""
