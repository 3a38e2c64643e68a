"""The package's layers, lowest first, and the check that every import points down (or sideways).

A module may import modules of its own layer or of lower ones, never of a higher one: the data
code works without any model, a model without the trainer, inference without the training loop.
This is the "layers" architectural pattern of Buschmann et al., *Pattern-Oriented Software
Architecture, Vol. 1* (Wiley 1996, Sec. 2.2): each layer uses only the services of the layers
below it, so a lower layer can be read, tested and imported alone. The import-time guard against
cycles is then the layering itself: no import has to be deferred into a function to dodge one.

:data:`LAYERS` assigns modules to layers by dotted prefix (the longest prefix wins);
:func:`upward_imports` parses every ``.py`` of the package with :mod:`ast` -- imports inside
functions and ``if`` blocks included, relative imports resolved -- and lists each import of a
higher layer. ``tests/test_layers.py`` fails on any. The module needs nothing but the standard
library, so the check runs without torch.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LAYERS", "Violation", "layer_of", "module_name", "upward_imports", "upward_imports_in"]

#: (layer name, module prefixes), lowest layer first
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("segedu", "segedu.errors", "segedu.profiles", "segedu.fileio", "segedu.significance", "segedu.env",
              "segedu.layers")),
    ("data", ("segedu.data",)),
    ("models", ("segedu.models",)),
    ("losses, metrics", ("segedu.losses", "segedu.metrics")),
    ("inference", ("segedu.inference",)),
    ("engine", ("segedu.engine",)),
    # the book's experiment helpers: they train, so they sit above the training loop
    ("experiments", ("segedu.experiments",)),
    ("app", ("segedu.cli", "segedu.__main__", "segedu.book", "segedu.notebook", "segedu.viz", "segedu.failures",
             "segedu.prose_check")),
)

_RANK = {prefix: (rank, name) for rank, (name, prefixes) in enumerate(LAYERS) for prefix in prefixes}


def layer_of(module: str) -> tuple[int, str]:
    """(rank, name) of ``module``'s layer, rank 0 the lowest: the layer of its longest listed prefix."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in _RANK:
            return _RANK[prefix]
    raise KeyError(f"{module} is in no layer of segedu.layers.LAYERS")


@dataclass(frozen=True)
class Violation:
    """An import of ``target`` (layer ``target_layer``) at ``path``:``line`` of ``module`` (layer ``layer``)."""

    path: str
    line: int
    module: str
    layer: str
    target: str
    target_layer: str

    def __str__(self) -> str:
        return (f"{self.path}:{self.line}: {self.module} (layer {self.layer}) imports {self.target} "
                f"(layer {self.target_layer}, higher)")


def module_name(path: Path, root: Path) -> str:
    """The dotted name of the file ``path`` of the package folder ``root`` (``.../segedu``)."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(tree: ast.AST, module: str, is_package: bool, known: set[str]):
    """(line, absolute module name) of every import in ``tree`` of a segedu module, at any depth.

    ``from pkg import name`` counts as an import of ``pkg.name`` when that is a module (in ``known``),
    else of ``pkg``."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                yield node.lineno, sub if sub in known else source


def upward_imports_in(source: str, module: str, path: str = "<string>", is_package: bool = False,
                      known: set[str] = frozenset()) -> list[Violation]:
    """The imports of a higher layer in the module ``module`` whose text is ``source``."""
    rank, layer = layer_of(module)
    found = set()
    for line, target in _imported(ast.parse(source, path), module, is_package, set(known)):
        if target != "segedu" and not target.startswith("segedu."):
            continue
        target_rank, target_layer = layer_of(target)
        if target_rank > rank:
            found.add(Violation(path, line, module, layer, target, target_layer))
    return sorted(found, key=lambda v: (v.line, v.target))


def upward_imports(root: str | Path) -> list[Violation]:
    """Every import of a higher layer in the package folder ``root`` (``.../segedu``), in file order."""
    root = Path(root)
    files = sorted(root.rglob("*.py"))
    known = {module_name(f, root) for f in files}
    found = []
    for f in files:
        found += upward_imports_in(f.read_text(encoding="utf-8"), module_name(f, root), str(f),
                                   f.name == "__init__.py", known)
    return found
