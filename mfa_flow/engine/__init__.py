"""The engine both orchestrators share: each public call as a generator of effects around one decision.

One module per endpoint holds its rules in the order of checks (docs/rules.md): ``send``, ``authenticate``, ``primary``,
``session_check``, ``factor`` and ``member``; ``reading`` holds the first checks every call shares.
"""

from mfa_flow.engine.calls import MAX_RERUNS, Call, FlowEngine, rerun_delay
from mfa_flow.engine.effects import Begin, Commit, End, Failed, Invoke, Read, Sleep

__all__ = [
    "MAX_RERUNS", "Begin", "Call", "Commit", "End", "Failed", "FlowEngine", "Invoke", "Read", "Sleep", "rerun_delay",
]
