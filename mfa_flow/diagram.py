"""Draw the machines the flow runs on, from the very transition tables it triggers (docs/concepts.md).

Every format starts from one drawing of ``mfa_flow.machine.TABLES``: a ``GraphMachine`` built on demand, so
nothing on the hot path pays for it and no drawing can drift from the tables. Mermaid is transitions' own
text; SVG and PNG are Graphviz DOT, written here from the same machine's markup and laid out by Graphviz's
``dot`` program (Debian: ``apt-get install graphviz``), run with a timeout. With a policy, each condition
that a policy number decides carries it (``expire [code_expired (otp_ttl 120 s)]``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, overload

from mfa_flow.errors import ConfigurationError
from mfa_flow.machine import TABLES, build
from mfa_flow.policy import Policy

__all__ = ["DOT_TIMEOUT", "FORMATS", "GRAPHVIZ_INSTALL", "diagram"]

FORMATS = ("mermaid", "svg", "png")
#: Seconds ``dot`` may take to lay out the four machines (it needs well under one).
DOT_TIMEOUT = 30.0
GRAPHVIZ_INSTALL = "Debian/Ubuntu: apt-get install graphviz"

#: (machine, condition) -> the policy number that decides it, as a label shows it.
_POLICY_TERMS: dict[tuple[str, str], Callable[[Policy], str]] = {
    ("code", "code_expired"): lambda p: f"otp_ttl {p.otp_ttl:g} s",
    ("code", "attempts_exhausted"): lambda p: f"max_attempts_per_code {p.max_attempts_per_code}",
    ("guard", "reaches_lockout"): lambda p: f"lockout_threshold {p.lockout_threshold}",
    ("guard", "lockout_reached"): lambda p: f"lockout_threshold {p.lockout_threshold}",
    ("guard", "lock_ended"): lambda p: f"lockout_duration {p.lockout_duration:g} s",
    ("login", "past_expiry"): lambda p: f"ist_ttl {p.ist_ttl:g} s",
    ("session", "past_expiry"): lambda p: f"default_session_minutes {p.default_session_minutes} min",
    ("session", "idle_too_long"): lambda p: f"inactivity_timeout {p.inactivity_timeout:g} s",
}


class _Drawing:
    """A throwaway model: GraphMachine draws only for an attached model, never the flow's records."""


def _machines(machine: str | None, policy: Policy | None) -> list[tuple[str, Any, _Drawing]]:
    """(name, GraphMachine, model) of each machine drawn; a condition is named by its function's name, and
    with a policy by that name and the number it is judged against."""
    if machine is not None and machine not in TABLES:
        raise ConfigurationError(f"machine: must be one of {sorted(TABLES)}, got {machine!r}")
    from transitions.extensions import GraphMachine

    drawn = []
    for name in [machine] if machine is not None else list(TABLES):
        states, initial, table = TABLES[name]

        def label(condition: Callable[..., Any], name: str = name) -> str:
            term = _POLICY_TERMS.get((name, condition.__name__))
            return condition.__name__ if policy is None or term is None else f"{condition.__name__} ({term(policy)})"

        rows = [{**row, "conditions": [label(c) for c in row["conditions"]]} if "conditions" in row else row
                for row in table]
        model = _Drawing()
        graph = build(states, initial, rows, GraphMachine, model=model, graph_engine="mermaid",
                      show_conditions=True, title=f"mfa_flow {name}")
        drawn.append((name, graph, model))
    return drawn


def _mermaid(drawn: list[tuple[str, Any, _Drawing]]) -> str:
    parts = []
    for name, _, model in drawn:
        text = model.get_graph().draw(None).rstrip()  # type: ignore[attr-defined]
        # transitions writes the title as a bare front-matter line; mermaid reads only a `title:` key.
        parts.append(text.replace(f"---\nmfa_flow {name}\n---", f"---\ntitle: mfa_flow {name}\n---", 1))
    return "\n\n".join(parts) + "\n"


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _dot(drawn: list[tuple[str, Any, _Drawing]]) -> str:
    """One digraph, a cluster per machine; an edge per (source, destination) with one line per transition,
    labelled as mermaid labels it (``trigger [condition & condition]``)."""
    lines = ["digraph mfa_flow {", "  rankdir=LR;",
             '  graph [fontname="Helvetica", fontsize=14, labeljust=l];',
             '  node [shape=box, style="rounded,filled", fillcolor=white, fontname="Helvetica", fontsize=12];',
             '  edge [fontname="Helvetica", fontsize=10];']
    for name, graph, _ in reversed(drawn):  # dot stacks the clusters of a left-to-right graph bottom up
        markup = graph.get_markup_config()
        lines += [f"  subgraph cluster_{name} {{", f"    label={_quoted('mfa_flow ' + name)};",
                  f"    {_quoted(name + '.*')} [shape=point, width=0.15, label=\"\"];"]
        lines += [f"    {_quoted(name + '.' + state['name'])} [label={_quoted(state['name'])}];"
                  for state in markup["states"]]
        lines.append(f"    {_quoted(name + '.*')} -> {_quoted(name + '.' + markup['initial'])};")
        edges: dict[tuple[str, str], list[str]] = {}
        for row in markup["transitions"]:
            conditions = row.get("conditions", [])
            text = row["trigger"] + (f" [{' & '.join(conditions)}]" if conditions else "")
            edges.setdefault((row["source"], row.get("dest", row["source"])), []).append(text)
        lines += [f"    {_quoted(name + '.' + source)} -> {_quoted(name + '.' + dest)} "
                  f"[label={_quoted(chr(10).join(texts))}];" for (source, dest), texts in edges.items()]
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _graphviz(source: str, fmt: str) -> bytes:
    """``source`` laid out by ``dot -T<fmt>``; a ConfigurationError naming the package when there is no dot."""
    import shutil  # here, not at the top: kept out of `import mfa_flow`, which no login needs (issue 11)
    import subprocess

    program = shutil.which("dot")
    if program is None:
        raise ConfigurationError(f"format {fmt}: needs Graphviz's dot program, which is not on PATH "
                                 f"({GRAPHVIZ_INSTALL}); --format mermaid needs nothing")
    try:
        done = subprocess.run([program, f"-T{fmt}"], input=source.encode(), capture_output=True,  # noqa: S603
                              timeout=DOT_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise ConfigurationError(f"format {fmt}: {program} did not finish within {DOT_TIMEOUT:g} s") from None
    except OSError as exc:
        raise ConfigurationError(f"format {fmt}: cannot run {program} ({exc.strerror})") from None
    if done.returncode != 0:
        said = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ConfigurationError(f"format {fmt}: {program} failed with exit status {done.returncode}"
                                 + (f": {said[-1]}" if said else ""))
    return done.stdout


@overload
def diagram(format: Literal["mermaid", "svg"] = "mermaid", *,
            machine: str | None = None, policy: Policy | None = None) -> str: ...
@overload
def diagram(format: Literal["png"], *, machine: str | None = None,
            policy: Policy | None = None) -> bytes: ...
@overload
def diagram(format: str, *, machine: str | None = None,
            policy: Policy | None = None) -> str | bytes: ...


def diagram(format: str = "mermaid", *, machine: str | None = None,  # noqa: A002 - the spec's name
            policy: Policy | None = None) -> str | bytes:
    """The state machines (code, guard, login, session, or only ``machine``) drawn in ``format``.

    ``mermaid``: ``stateDiagram-v2`` text, one document per machine. ``svg`` (text) and ``png`` (bytes): one
    Graphviz digraph, a cluster per machine, laid out by Graphviz's ``dot``, which must be on PATH (a
    ConfigurationError names the Debian package when it is not). ``policy`` adds to each condition a policy
    number decides the number it is judged against.
    """
    if format not in FORMATS:
        raise ConfigurationError(f"format: must be one of {', '.join(FORMATS)}, got {format!r}")
    drawn = _machines(machine, policy)
    if format == "mermaid":
        return _mermaid(drawn)
    laid_out = _graphviz(_dot(drawn), format)
    return laid_out.decode("utf-8") if format == "svg" else laid_out
