"""Which source code a stage's outputs depend on: the `code` part of its provenance key.

Read with `ast`, nothing imported. A stage names its entry module ("reward_model", "studies.frontier");
that whole file counts, and from every other minidpo module only the top-level definitions it
reaches: the functions, classes and assignments whose names it uses, and what those use in turn,
across imports (`from .losses import bradley_terry_loss`, `from .. import world` + `world.gold_reward`,
lazy imports inside functions too). So a lecturer who adds a loss to losses.py makes stale only what
reaches that loss, and the reward model, which reaches only `bradley_terry_loss`, is reused.

Two conventions keep this honest:
- a registry's entries are not reached through the registry (the `LOSSES` dict is `{}` in the source;
  the `@register_loss` lines fill it when the module is imported). A stage that trains with a
  registered loss names it in its settings (`DPOConfig.key()` has the loss's source hash) and
  `entries_for_config` adds that loss's function as an entry, with what it reaches;
- a use of a module as a whole (`plots` passed around, `getattr(module, name)`) counts the whole module.
"""
from __future__ import annotations

import ast
import hashlib
import re
from functools import lru_cache
from pathlib import Path

from ..checkpoint import file_hash

PACKAGE = Path(__file__).resolve().parent.parent  # the minidpo package folder
ALL = "*"  # every top-level statement of a module


def module_file(module: str) -> Path:
    """The source file of `module`, a dotted name inside minidpo ("dpo", "studies.museum")."""
    return PACKAGE.joinpath(*module.split(".")).with_suffix(".py")


def _is_module(module: str) -> bool:
    return bool(module) and module_file(module).is_file()


def _import_targets(node, package: list[str]):
    """(local name, ("module", m) | ("name", m, name)) for each name an import statement binds,
    for the minidpo modules it reaches; other packages' imports give nothing."""
    if isinstance(node, ast.Import):
        for a in node.names:
            if a.name.startswith("minidpo."):
                target = a.name.split(".", 1)[1]
                yield (a.asname or a.name), ("module", target)
        return
    if node.level:  # from .x import y / from ..x import y
        stem = package[:len(package) - node.level + 1] + (node.module.split(".") if node.module else [])
    elif (node.module or "").split(".")[0] == "minidpo":
        stem = node.module.split(".")[1:]
    else:
        return
    base = ".".join(stem)
    for a in node.names:
        sub = ".".join(stem + [a.name])
        if _is_module(sub):  # `from . import world`: the name is a module
            yield a.asname or a.name, ("module", sub)
        elif _is_module(base):
            yield a.asname or a.name, ("name", base, a.name)


class _Uses(ast.NodeVisitor):
    """The global names a statement reads, and `alias.attr` reads of module aliases."""

    def __init__(self, module_aliases):
        self.aliases, self.names, self.attrs = module_aliases, set(), set()

    def visit_Attribute(self, node):
        if isinstance(node.value, ast.Name) and node.value.id in self.aliases:
            self.attrs.add((node.value.id, node.attr))
        else:
            self.generic_visit(node)

    def visit_Name(self, node):
        self.names.add(node.id)


def _defines(stmt) -> set[str]:
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {stmt.name}
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [getattr(stmt, "target", None)]
    return {n.id for t in targets if t is not None for n in ast.walk(t) if isinstance(n, ast.Name)}


_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")  # lines as `ast` splits them, ends kept


def source_segment(lines: list[str], node) -> str:
    """`ast.get_source_segment(text, node)` from the text's lines split once (that function splits
    the whole file again for every node it is asked about)."""
    first, last = node.lineno - 1, node.end_lineno - 1
    if first == last:
        return lines[first].encode()[node.col_offset:node.end_col_offset].decode()
    return "".join([lines[first].encode()[node.col_offset:].decode(), *lines[first + 1:last],
                    lines[last].encode()[:node.end_col_offset].decode()])


@lru_cache(maxsize=None)
def _parse(module: str, digest: str):
    """(statements, imports) of a module: statements as (source, names defined, names used,
    attribute uses); imports: local name -> target, from import statements at any depth."""
    path = module_file(module)
    text = path.read_text(encoding="utf-8")
    tree, lines = ast.parse(text), _LINE.findall(text)
    package = module.split(".")[:-1]
    imports = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.update(_import_targets(node, package))
    aliases = {k for k, v in imports.items() if v[0] == "module"}
    statements = []
    for stmt in tree.body:
        if isinstance(stmt, (ast.Import, ast.ImportFrom)) or (
                isinstance(stmt, ast.Expr) and isinstance(getattr(stmt, "value", None), ast.Constant)):
            continue  # imports bind names (resolved through `imports`); docstrings compute nothing
        uses = _Uses(aliases)
        uses.visit(stmt)
        statements.append((source_segment(lines, stmt) or ast.dump(stmt), _defines(stmt),
                           frozenset(uses.names), frozenset(uses.attrs)))
    return statements, imports


def _module(module: str, memo: dict | None = None):
    """The parsed module, as its file now is (`memo`: one lookup's files, each read and hashed once)."""
    if memo is not None and module in memo:
        return memo[module]
    parsed = _parse(module, file_hash(module_file(module)))
    if memo is not None:
        memo[module] = parsed
    return parsed


def reached(*entries: str) -> dict[str, list[str]]:
    """module -> the source of every top-level statement the entries reach, in file order.
    An entry is "module" (the whole module) or "module:name" (that definition and what it uses)."""
    todo = [tuple(e.split(":", 1)) if ":" in e else (e, ALL) for e in entries]
    seen: set[tuple[str, str]] = set()
    chosen: dict[str, set[int]] = {}
    memo: dict = {}
    while todo:
        module, name = todo.pop()
        if (module, name) in seen or not (module in memo or _is_module(module)):
            continue
        seen.add((module, name))
        statements, imports = _module(module, memo)
        if name != ALL and name in imports and not any(name in s[1] for s in statements):
            target = imports[name]
            todo.append((target[1], ALL if target[0] == "module" else target[2]))
            continue
        picked = [i for i, s in enumerate(statements) if name == ALL or name in s[1]]
        chosen.setdefault(module, set()).update(picked)
        local = {n for s in statements for n in s[1]}
        for i in picked:
            _, _, names, attrs = statements[i]
            for n in names:
                if n in local:
                    todo.append((module, n))
                elif n in imports:
                    target = imports[n]
                    if target[0] == "name":
                        todo.append((target[1], target[2]))
                    elif not any(a == n for a, _ in attrs):
                        todo.append((target[1], ALL))  # the module itself is used, not one attribute
            for alias, attr in attrs:
                todo.append((imports[alias][1], attr))
    return {m: [memo[m][0][i][0] for i in sorted(idx)] for m, idx in sorted(chosen.items()) if idx}


def code_hashes(*entries: str) -> dict[str, str]:
    """module -> hash of what the entries reach in it (the `code` of a provenance key)."""
    return {m: hashlib.sha256("\n\n".join(parts).encode("utf-8")).hexdigest()[:16]
            for m, parts in reached(*entries).items()}


def entries_for_config(config: dict) -> tuple[str, ...]:
    """Entries a stage's settings add: the registered loss it trains with (see the module docstring)."""
    name = config.get("loss_type")
    if not isinstance(name, str):
        return ()
    from ..losses import LOSSES
    loss = LOSSES.get(name)
    fn = loss.source if loss is not None else None
    module = getattr(fn, "__module__", "") or ""
    if module.startswith("minidpo.") and _is_module(module.split(".", 1)[1]):
        return (f"{module.split('.', 1)[1]}:{fn.__name__}",)
    return ()  # a loss defined outside minidpo (a notebook cell): its source hash is in the settings


def script_entries(text: str) -> tuple[str, ...]:
    """The entries (for `reached`) of a script outside the package, such as a lesson: every name it
    imports from a minidpo module and uses, every `alias.name` it reads of an imported module, and
    a module it uses as a whole."""
    tree = ast.parse(text)
    imports = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.update(_import_targets(node, []))
    uses = _Uses({k for k, v in imports.items() if v[0] == "module"})
    uses.visit(tree)
    entries = {f"{imports[alias][1]}:{attr}" for alias, attr in uses.attrs}
    for name in uses.names & set(imports):
        target = imports[name]
        entries.add(f"{target[1]}:{target[2]}" if target[0] == "name" else target[1])
    return tuple(sorted(entries))


def imported_modules(module: str) -> set[str]:
    """The minidpo modules that `module` imports anywhere in its source, as dotted names."""
    return {t[1] for t in _module(module)[1].values()}
