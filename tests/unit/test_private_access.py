"""Only the fence module (streams/runtime/fence.py) touches private names of faust, aiokafka or mode.

The worker leans on members of Faust's consumer, aiokafka's client and mode's services that are not
part of their public API (offset bookkeeping, fetch settings, service internals). An upgrade of
faust-streaming, aiokafka or mode-streaming may rename or reshape any of them without notice, and a
renamed attribute read through ``getattr(..., default)`` or a private method no longer called after an
override fails silently: in the data, not in a test. So all of them are used in one fence module, whose
contract test checks each of them on the pinned versions; an upgrade then fails that test.

This test is the lint rule that keeps them there. A private name is one starting with one underscore,
not a dunder. The libraries' private names are those their installed sources define (parsed with
``ast``): functions and methods, class-level assignments, ``self._x`` / ``cls._x`` assignments and
``__slots__``. In every module of ``streams/`` but the fence, it flags:

- an attribute ``expr._x`` (``expr`` not ``self``/``cls``/``super()``) whose name is a library private
  name, unless the module defines ``_x`` itself (the project's own private names are fine);
- a string ``"_x"`` given to ``getattr``/``hasattr``/``setattr``/``delattr`` that is a library private name;
- an import of a private module or name of the libraries;
- in a class deriving from a library class, every ``self._x``/``cls._x``/``super()._x`` and every
  method or class attribute ``_x`` defined in its body, where ``_x`` is a private name of a library class
  in its MRO (``dir`` of the class plus the ``self._x`` its source assigns): overriding or reading a
  library's private member is exactly the dependency to fence, whether the project class assigns it too
  or not.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.machinery
import inspect
import textwrap
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import faust.transport.drivers.aiokafka

LIBRARIES = frozenset({"faust", "aiokafka", "mode"})
REPO = Path(__file__).parents[2]
PACKAGE = REPO / "streams"
FENCE = Path("runtime") / "fence.py"  # relative to the package
SELF_NAMES = frozenset({"self", "cls"})
ATTRIBUTE_BY_NAME_FUNCTIONS = frozenset({"getattr", "hasattr", "setattr", "delattr"})

# (path relative to the repository, name): names the rule flags but that are not a library's private
# member. Empty: add one only with a comment saying whose name it is.
ALLOWED: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True, order=True)
class Violation:
    path: str
    line: int
    name: str
    how: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.name} ({self.how})"


def is_private(name: str) -> bool:
    """``_x`` but not a dunder ``__x__`` nor the throwaway ``_``."""
    return name.startswith("_") and name != "_" and not (name.startswith("__") and name.endswith("__"))


# -- private names a source defines --------------------------------------------------------------


def _names_a_class_statement_defines(statement: ast.stmt) -> Iterator[str]:
    """Names a statement of a class body binds: methods, class attributes, ``__slots__`` entries."""
    if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
        yield statement.name
        return
    if isinstance(statement, ast.Assign):
        targets: list[ast.expr] = statement.targets
    elif isinstance(statement, ast.AnnAssign | ast.AugAssign):
        targets = [statement.target]
    else:
        return
    for target in targets:
        yield from (name.id for name in ast.walk(target) if isinstance(name, ast.Name))
    if any(isinstance(t, ast.Name) and t.id == "__slots__" for t in targets) and statement.value is not None:
        yield from (c.value for c in ast.walk(statement.value) if isinstance(c, ast.Constant)
                    and isinstance(c.value, str))


def _is_self(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id in SELF_NAMES


def defined_private_names(tree: ast.AST) -> frozenset[str]:
    """Private names ``tree`` defines: functions and methods, class-level assignments and annotations,
    ``__slots__`` entries, and attributes assigned on ``self``/``cls`` (plain, annotated, augmented,
    unpacked)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            for statement in node.body:
                names.update(_names_a_class_statement_defines(statement))
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and _is_self(node.value):
            names.add(node.attr)
    return frozenset(name for name in names if is_private(name))


def _library_files(library: str) -> Iterator[Path]:
    # PathFinder, not importlib.util.find_spec: once imported, faust's module object is a lazy one
    # without a __spec__, which find_spec reads from sys.modules.
    spec = importlib.machinery.PathFinder.find_spec(library)
    assert spec is not None and spec.submodule_search_locations, f"{library} is not installed as a package"
    for location in spec.submodule_search_locations:
        yield from sorted(Path(location).rglob("*.py"))


@functools.cache
def library_private_names() -> frozenset[str]:
    """Every private name the installed faust, aiokafka and mode sources define (a second or two)."""
    names: set[str] = set()
    for library in sorted(LIBRARIES):
        for path in _library_files(library):
            names |= defined_private_names(ast.parse(path.read_bytes(), filename=str(path)))
    return frozenset(names)


# -- private names of a class's library bases ------------------------------------------------------


def is_library_class(cls: type) -> bool:
    return cls.__module__.partition(".")[0] in LIBRARIES


@functools.cache
def _private_names_of_library_class(cls: type) -> frozenset[str]:
    names = {name for name in dir(cls) if is_private(name)}
    # dir() misses instance attributes: take those the class's source assigns on self.
    try:
        source = textwrap.dedent(inspect.getsource(cls))
        names |= defined_private_names(ast.parse(source))
    except (OSError, TypeError, SyntaxError):
        pass  # no source (a builtin or compiled class): dir() is all there is
    return frozenset(names)


def library_base_private_names(cls: type) -> frozenset[str]:
    """The private names of the library classes in ``cls``'s MRO (empty when it has none)."""
    names: set[str] = set()
    for base in cls.__mro__:
        if base is not object and is_library_class(base):
            names |= _private_names_of_library_class(base)
    return frozenset(names)


# -- the checker -----------------------------------------------------------------------------------


def _is_super_call(node: ast.expr) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"


def _is_library_module(module: str) -> bool:
    return module.partition(".")[0] in LIBRARIES


class _PrivateAccessFinder(ast.NodeVisitor):
    def __init__(self, path: str, own_names: frozenset[str], library_bases: Mapping[str, frozenset[str]]) -> None:
        self.path = path
        self.own_names = own_names
        self.library_bases = library_bases
        self.library_names = library_private_names()
        self.classes: list[tuple[str, frozenset[str]]] = []  # (qualified name, its library bases' private names)
        self.violations: list[Violation] = []

    def flag(self, node: ast.stmt | ast.expr, name: str, how: str) -> None:
        self.violations.append(Violation(self.path, node.lineno, name, how))

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        qualname = ".".join([*(name for name, _ in self.classes), node.name])
        inherited = self.library_bases.get(qualname, frozenset())
        for statement in node.body:
            for name in _names_a_class_statement_defines(statement):
                if is_private(name) and name in inherited:
                    self.flag(statement, name, f"override in class {qualname}")
        self.classes.append((qualname, inherited))
        self.generic_visit(node)
        self.classes.pop()

    def visit_Attribute(self, node: ast.Attribute) -> None:
        name = node.attr
        if is_private(name):
            if _is_self(node.value) or _is_super_call(node.value):
                # Only a library base makes self._x a library's member.
                if self.classes and name in self.classes[-1][1]:
                    self.flag(node, name, f"{ast.unparse(node.value)}.{name} in class {self.classes[-1][0]}")
            elif name in self.library_names and name not in self.own_names:
                self.flag(node, name, "attribute")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if (isinstance(node.func, ast.Name) and node.func.id in ATTRIBUTE_BY_NAME_FUNCTIONS and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
                and node.args[1].value in self.library_names):
            self.flag(node, node.args[1].value, f"{node.func.id} string")
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if _is_library_module(alias.name) and any(is_private(part) for part in alias.name.split(".")):
                self.flag(node, alias.name, "import")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level == 0 and _is_library_module(module):
            private_module = any(is_private(part) for part in module.split("."))
            for alias in node.names:
                if private_module or is_private(alias.name):
                    self.flag(node, f"{module}.{alias.name}", "import")


def private_accesses(source: str, path: str, library_bases: Mapping[str, frozenset[str]]) -> list[Violation]:
    """The uses of faust's, aiokafka's and mode's private names in ``source``.

    ``library_bases`` maps a class's qualified name in ``source`` to the private names of the library
    classes in its MRO (:func:`library_base_private_names`); classes not in it have no library base."""
    tree = ast.parse(source, filename=path)
    finder = _PrivateAccessFinder(path, defined_private_names(tree), library_bases)
    finder.visit(tree)
    return sorted(set(finder.violations))  # once per line and name


# -- the project -----------------------------------------------------------------------------------


def modules_to_check(package: Path) -> list[Path]:
    """Every module of ``package`` but the fence."""
    return [path for path in sorted(package.rglob("*.py")) if path.relative_to(package) != FENCE]


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _classes_with_bases(tree: ast.Module) -> Iterator[str]:
    """Qualified names of the classes with explicit bases (classes inside functions have none the
    checker could import; the project has none)."""
    def walk(body: Iterable[ast.stmt], prefix: str) -> Iterator[str]:
        for node in body:
            if isinstance(node, ast.ClassDef):
                if node.bases:
                    yield prefix + node.name
                yield from walk(node.body, f"{prefix}{node.name}.")
    yield from walk(tree.body, "")


def library_bases_of(path: Path) -> dict[str, frozenset[str]]:
    """For each class of the module at ``path`` deriving from a library class, its bases' private names
    (the module is imported: bases resolve as Python resolves them)."""
    names = list(_classes_with_bases(ast.parse(path.read_bytes(), filename=str(path))))
    if not names:
        return {}
    module = importlib.import_module(_module_name(path))
    bases: dict[str, frozenset[str]] = {}
    for qualname in names:
        cls: object = module
        for part in qualname.split("."):
            cls = getattr(cls, part)
        assert isinstance(cls, type), f"{path}: {qualname} is not a class once imported"
        private_names = library_base_private_names(cls)
        if private_names:
            bases[qualname] = private_names
    return bases


def project_private_accesses() -> list[Violation]:
    violations = []
    for path in modules_to_check(PACKAGE):
        relative = str(path.relative_to(REPO))
        violations += [violation for violation in private_accesses(path.read_text(), relative, library_bases_of(path))
                       if (violation.path, violation.name) not in ALLOWED]
    return violations


def test_no_module_but_the_fence_uses_a_private_name_of_faust_aiokafka_or_mode() -> None:
    violations = project_private_accesses()
    assert not violations, (
        f"{len(violations)} uses of private names of faust, aiokafka or mode outside the fence; put each behind "
        "streams/runtime/fence.py with a public name:\n" + "\n".join(map(str, violations)))


# -- the checker itself ----------------------------------------------------------------------------

AIOKAFKA_CONSUMER_BASES = {"Gapless": library_base_private_names(faust.transport.drivers.aiokafka.Consumer)}


def flagged(source: str, library_bases: Mapping[str, frozenset[str]] | None = None) -> list[tuple[str, str]]:
    return [(v.name, v.how) for v in private_accesses(textwrap.dedent(source), "example.py", library_bases or {})]


def test_the_library_private_names_are_those_their_sources_define() -> None:
    names = library_private_names()
    # Defined as a method, a self attribute (faust, aiokafka, mode), a class attribute, a slot.
    assert {"_new_offset", "_committed_offset", "_fetch_max_wait_ms", "_stopped", "_ensure_producer"} <= names
    assert not {name for name in names if not is_private(name)}
    assert "_getframe" not in names  # sys's, which mode calls but does not define


def test_a_library_private_attribute_of_another_object_is_flagged() -> None:
    assert flagged("offsets = consumer._committed_offset[tp]\n") == [("_committed_offset", "attribute")]
    assert flagged("cast(Any, producer)._ensure_producer()\n") == [("_ensure_producer", "attribute")]


def test_a_library_private_name_given_as_a_string_is_flagged() -> None:
    assert flagged('offset = getattr(x, "_read_offset")\n') == [("_read_offset", "getattr string")]
    assert flagged('hasattr(x, "_acked")\n') == [("_acked", "hasattr string")]


def test_an_import_of_a_private_name_of_a_library_is_flagged() -> None:
    assert flagged("from faust.utils import _private\nimport mode._internal\nfrom os import _exit\n") == [
        ("faust.utils._private", "import"), ("mode._internal", "import")]


def test_the_projects_own_private_names_are_not_flagged() -> None:
    assert "_new_offset" in library_private_names()  # else this test proves nothing
    source = """
        class Plain:
            def __init__(self) -> None:
                self._committed_offset = {}  # a plain class's own, though faust has one of that name

        def _new_offset(tp):
            return 0

        def use(obj, other):
            obj._new_offset(1)  # defined in this module
            return other._private_of_nobody, obj.__class__
    """
    assert flagged(source) == []


def test_private_names_of_other_libraries_are_not_flagged() -> None:
    assert flagged("import sys\nframe = sys._getframe(1)\n") == []


def test_overriding_or_using_a_private_member_of_a_library_base_is_flagged() -> None:
    source = """
        class Gapless(Consumer):
            _commit_every = 10

            def __init__(self) -> None:
                self._mine = 0

            async def _add_gap(self, tp, offset_from, offset_to):
                return None

            def _new_offset(self, tp):
                self._read_offset[tp] = None
                return super()._new_offset(tp)

            def _helper_of_ours(self):
                return self._mine
    """
    assert flagged(source, AIOKAFKA_CONSUMER_BASES) == [
        ("_commit_every", "override in class Gapless"),
        ("_add_gap", "override in class Gapless"),
        ("_new_offset", "override in class Gapless"),
        ("_read_offset", "self._read_offset in class Gapless"),
        ("_new_offset", "super()._new_offset in class Gapless"),
    ]


def test_the_fence_is_the_one_module_not_checked(tmp_path: Path) -> None:
    for module in ("runtime/fence.py", "runtime/transport.py", "fence.py"):
        (tmp_path / module).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / module).write_text("")
    assert [path.relative_to(tmp_path).as_posix() for path in modules_to_check(tmp_path)] == [
        "fence.py", "runtime/transport.py"]
