"""The layering of DESIGN.md section 2, enforced: no layer imports one above it.

Strategy: parse every module with `ast`, collect the project modules it imports (absolute or relative), and
compare the importing layer with the imported one against the allowed-dependency table.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# layer -> the project layers it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "memento": set(),
    "ottermq.amqp": set(),
    "ottermq.broker": {"ottermq.amqp"},
    "ottermq.store": {"ottermq.amqp", "ottermq.broker", "memento"},
    # Cluster membership, leader election and (later) log replication: beside the server, below it.
    "ottermq.cluster": {"ottermq.amqp", "ottermq.broker", "ottermq.store", "memento"},
    # RabbitMQ's stream protocol: its codec and chunk layout are pure (like ottermq.amqp), the sessions
    # work on the broker's stream queues.
    "ottermq.streamproto": {
        "ottermq.amqp",
        "ottermq.broker",
        "ottermq.streamproto.codec",
        "ottermq.streamproto.chunk",
    },
    "ottermq.streamproto.codec": set(),
    "ottermq.streamproto.chunk": set(),
    "ottermq.server": {"ottermq.amqp", "ottermq.broker", "ottermq.store", "ottermq.cluster"},
    # The management HTTP API: a peer of the server layer that reuses its ctl queries; the CLI wires it in.
    "ottermq.http": {"ottermq.amqp", "ottermq.broker", "ottermq.store", "ottermq.server", "ottermq.cluster"},
    "ottermq": {
        "ottermq.amqp",
        "ottermq.broker",
        "ottermq.store",
        "ottermq.server",
        "ottermq.cluster",
        "ottermq.http",
        "ottermq.streamproto",
        "memento",
    },
}


def layer_of(module: str) -> str | None:
    """The layer a dotted module name belongs to (the longest matching prefix), or None if not ours."""
    best: str | None = None
    for layer in ALLOWED:
        if (module == layer or module.startswith(layer + ".")) and (best is None or len(layer) > len(best)):
            best = layer
    return best


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> list[str]:
    """Absolute names of every module imported by the file at `path`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base)
                target = f"{prefix}.{node.module}" if node.module else prefix
            else:
                target = node.module or ""
            found.append(target)
            found.extend(f"{target}.{alias.name}" for alias in node.names)
    return found


def project_files() -> list[Path]:
    return sorted([*ROOT.joinpath("memento").rglob("*.py"), *ROOT.joinpath("ottermq").rglob("*.py")])


def violations(path: Path) -> list[str]:
    layer = layer_of(module_name(path))
    assert layer is not None
    bad = []
    for target in imported_modules(path):
        target_layer = layer_of(target)
        if target_layer is None or target_layer == layer:
            continue
        if target_layer not in ALLOWED[layer]:
            bad.append(f"{module_name(path)} imports {target} ({layer} may not depend on {target_layer})")
    return bad


@pytest.mark.parametrize("path", project_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_module_respects_layering(path: Path) -> None:
    assert violations(path) == []


def test_checker_catches_an_upward_import(tmp_path: Path) -> None:
    offender = ROOT / "memento" / "_layering_probe.py"
    offender.write_text("from ottermq.broker import queue\n")
    try:
        assert violations(offender) != []
    finally:
        offender.unlink()
    relative = ROOT / "ottermq" / "amqp" / "_layering_probe.py"
    relative.write_text("from ..broker import queue\n")
    try:
        assert violations(relative) != []
    finally:
        relative.unlink()
