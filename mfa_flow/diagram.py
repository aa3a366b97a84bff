"""Draw the machines the flow runs on, from the very transition tables it triggers (docs/concepts.md)."""

from __future__ import annotations

from mfa_flow.errors import ConfigurationError
from mfa_flow.machine import TABLES, build

__all__ = ["diagram"]


class _Drawing:
    """A throwaway model: GraphMachine draws only for an attached model, never the flow's records."""


def diagram(format: str = "mermaid", *, machine: str | None = None) -> str:  # noqa: A002 - the spec's name
    """Mermaid ``stateDiagram-v2`` text: one document per machine (code, guard, login, session).

    Built on demand from ``mfa_flow.machine.TABLES`` with a separate ``GraphMachine``, so the drawing
    can never drift from the tables; nothing on the hot path pays for it.
    """
    if format != "mermaid":
        raise ConfigurationError(f"format: only 'mermaid' is supported, got {format!r}")
    if machine is not None and machine not in TABLES:
        raise ConfigurationError(f"machine: must be one of {sorted(TABLES)}, got {machine!r}")
    from transitions.extensions import GraphMachine

    names = [machine] if machine is not None else list(TABLES)
    parts = []
    for name in names:
        model = _Drawing()
        states, initial, table = TABLES[name]
        build(states, initial, table, GraphMachine, model=model, graph_engine="mermaid", show_conditions=True,
              title=f"mfa_flow {name}")
        text = model.get_graph().draw(None).rstrip()  # type: ignore[attr-defined]
        # transitions writes the title as a bare front-matter line; mermaid reads only a `title:` key.
        parts.append(text.replace(f"---\nmfa_flow {name}\n---", f"---\ntitle: mfa_flow {name}\n---", 1))
    return "\n\n".join(parts) + "\n"
