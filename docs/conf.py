"""
Sphinx configuration for the smtpsts documentation.

Build: ``sphinx-build -n -W -T -b html docs docs/_build/html`` (and ``-b doctest``
for the examples). No network is needed: intersphinx inventories are fetched
only when ``SMTPSTS_DOCS_INTERSPHINX=1`` is set.

Some pages are completed at build time, so that a module, command or vector
group that is not there yet never breaks the build:

- ``api.md``: one section per public module of the package that imports;
- ``cli.md``: the ``--help`` text of every registered command;
- ``vectors.md``: an ``{include}`` of every ``docs/vectors/<group>.md``;
- ``changelog.md``: ``../CHANGELOG.md`` when it exists.

Each of these pages holds a marker comment (``<!-- smtpsts:api -->`` ...) that a
``source-read`` handler replaces.
"""

from __future__ import annotations

import argparse
import enum
import functools
import importlib
import importlib.util
import io
import os
import pkgutil
import re
import sys
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

import smtpsts  # noqa: E402 -- after the path is set
from smtpsts._cli import build_parser  # noqa: E402

project = "smtpsts"
author = "The smtpsts developers"
copyright = "2026, The smtpsts developers"

try:
    from importlib.metadata import version as _version

    release = _version("smtpsts")
except Exception:  # noqa: BLE001 -- building from a tree that is not installed
    release = "0.0.0"
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.doctest",
    "sphinx.ext.viewcode",
    "sphinxcontrib.mermaid",
]

source_suffix = {".md": "markdown"}
master_doc = "index"
# Fragments (docs/vectors/<group>.md) are pulled into vectors.md by {include};
# they are not pages of their own.
exclude_patterns = ["_build", "vectors/*", "Thumbs.db", ".DS_Store"]

myst_enable_extensions = ["colon_fence", "deflist", "fieldlist"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = f"smtpsts {release}"

# -- autodoc / napoleon -------------------------------------------------------
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_member_order = "bysource"
autodoc_default_options = {"show-inheritance": True}
autoclass_content = "class"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = True

# -- intersphinx: opt-in, since CI has no access to the inventories ------------
if os.environ.get("SMTPSTS_DOCS_INTERSPHINX") == "1":
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "cryptography": ("https://cryptography.io/en/latest/", None),
        "dnspython": ("https://dnspython.readthedocs.io/en/stable/", None),
        "attrs": ("https://www.attrs.org/en/stable/", None),
    }
else:
    intersphinx_mapping = {}

# -- nitpicky: our own references must resolve; other projects' need not ------
nitpicky = True
nitpick_ignore_regex = [
    # Standard library and third-party types (resolved only with intersphinx).
    (r"py:.*", r"({})(\..*)?".format("|".join(sorted(sys.stdlib_module_names)))),
    (
        r"py:.*",
        r"(cryptography|dns|dkim|attr|attrs|h11|idna|redis|httpx|starlette|uvicorn|psycopg|prometheus_client)(\..*)?",
    ),
    # Names as they appear in signatures rendered by autodoc_typehints="description".
    (
        r"py:.*",
        (
            r"(Any|Self|NoReturn|Mapping|Sequence|Iterable|Iterator|Callable|Awaitable"
            r"|AsyncIterator|Path|datetime|timedelta|date|Enum|StrEnum|IntEnum|Attribute"
            r"|Certificate|IPv4Address|IPv6Address|EmailMessage|Message|Pattern|Match)"
        ),
    ),
    (r"py:.*", r"(NoneType|ellipsis|T|_T|TypeVar|P|.*\.T)"),
    # Private helpers (and the members of private modules) have no page to link to.
    (r"py:.*", r"(.*\.)?_[A-Za-z][A-Za-z0-9_]*(\..*)?"),
]

# -- doctest --------------------------------------------------------------------
doctest_global_setup = """
import smtpsts
"""

# -----------------------------------------------------------------------------
# Generated page parts
# -----------------------------------------------------------------------------

#: Modules documented first, in this order; any other public module of the
#: package that imports is documented after them.
API_ORDER = [
    "smtpsts",
    "smtpsts.exceptions",
    "smtpsts.record",
    "smtpsts.policy",
    "smtpsts.mx",
    "smtpsts.lint",
    "smtpsts.certs",
    "smtpsts.dane",
    "smtpsts.actions",
    "smtpsts.cache",
    "smtpsts.decision",
    "smtpsts.tlsrpt",
    "smtpsts.tlsrpt.record",
    "smtpsts.tlsrpt.session",
    "smtpsts.tlsrpt.model",
    "smtpsts.tlsrpt.aggregate",
    "smtpsts.tlsrpt.serialize",
    "smtpsts.vectors",
]

#: Layers planned that may not exist yet (docs/architecture.md); references into
#: them render as plain text until their module is documented.
PLANNED = (
    "smtpsts.io",
    "smtpsts.stores",
    "smtpsts.cache",
    "smtpsts.decision",
    "smtpsts.lint",
    "smtpsts.tlsrpt.",
    "smtpsts.postfix",
    "smtpsts.lab",
)


def _public_modules() -> list[str]:
    found = []
    for info in pkgutil.walk_packages(smtpsts.__path__, "smtpsts."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        try:
            importlib.import_module(info.name)
        except Exception as e:  # noqa: BLE001 -- a module being written must not break the docs
            print(f"smtpsts docs: skipping {info.name}: {e!r}", file=sys.stderr)
            continue
        found.append(info.name)
    ordered = [m for m in API_ORDER if m == "smtpsts" or m in found]
    return ordered + sorted(set(found) - set(ordered))


def _defining_module(obj: Any) -> str | None:
    mod = getattr(obj, "__module__", None)
    return mod if isinstance(mod, str) else None


def _name_in(home: str, obj: Any, attr: str) -> str:
    """Return the documented name of *obj* in module *home* (an alias may differ from *attr*)."""
    module = importlib.import_module(home)
    if getattr(module, attr, None) is obj:
        return attr
    for name in getattr(module, "__all__", ()):
        if getattr(module, name, None) is obj:
            return name
    if isinstance(obj, enum.Enum):  # a member re-exported as a module constant: its class's page
        return f"{type(obj).__name__}.{obj.name} <{home}.{type(obj).__name__}>"
    return getattr(obj, "__qualname__", attr)


def _api_markdown() -> str:
    """
    Write one ``automodule`` per public module.

    A name a module re-exports is documented once: in the public module that
    defines it, or -- when it is defined in a private module -- in the first
    public module (in :data:`API_ORDER`) that exports it. Every other module that
    exports it links there instead.
    """
    out: list[str] = []
    for name, exclude, links in _api_plan()[0]:
        out += [f"## `{name}`", "", "```{eval-rst}", f".. automodule:: {name}", "   :members:"]
        if exclude:
            out.append(f"   :exclude-members: {', '.join(exclude)}")
        out += ["```", ""]
        if links:
            out += ["Also exported here:", "", *links, ""]
    return "\n".join(out)


@functools.cache
def _api_plan() -> tuple[list[tuple[str, list[str], list[str]]], dict[int, str]]:
    """
    Decide where each public name is documented.

    Returns:
        ``(module, excluded names, link lines)`` per module, and the documented
        name of each object defined in a private module, by ``id()``.
    """
    modules = _public_modules()
    documented = set(modules)
    seen: dict[int, str] = {}
    plan = []
    for name in modules:
        module = importlib.import_module(name)
        exclude: list[str] = []
        links: list[str] = []
        for attr in getattr(module, "__all__", ()):
            try:
                obj = getattr(module, attr)
            except Exception:  # noqa: BLE001 -- a lazy name whose module is not there yet
                exclude.append(attr)
                continue
            home = _defining_module(obj)
            if home is None or home == name:
                continue
            role = (
                "py:exc" if isinstance(obj, type) and issubclass(obj, BaseException) else "py:obj"
            )
            if home in documented:
                exclude.append(attr)
                target = _name_in(home, obj, attr)
                ref = target if "<" in target else f"{home}.{target}"
                links.append(f"- `{name}.{attr}`: {{{role}}}`{ref}`")
            elif id(obj) in seen:
                exclude.append(attr)
                links.append(f"- `{name}.{attr}`: {{{role}}}`{seen[id(obj)]}`")
            else:
                seen[id(obj)] = f"{name}.{attr}"
        plan.append((name, exclude, links))
    return plan, seen


def _cli_markdown() -> str:
    parser = build_parser()
    out: list[str] = []

    def walk(p: argparse.ArgumentParser, words: list[str]) -> None:
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]  # noqa: SLF001
        if words:
            out.extend(
                [f"### `{' '.join(words)}`", "", "```text", p.format_help().rstrip(), "```", ""]
            )
        for action in subs:
            for word, child in action.choices.items():
                walk(child, [*words, word])

    parser.prog = "smtpsts"
    # A fixed width, so that the page does not depend on the terminal.
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "88"
    try:
        with redirect_stdout(io.StringIO()):
            walk(parser, ["smtpsts"])
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns
    return "\n".join(out)


def _vector_fragments() -> str:
    frags = sorted((DOCS / "vectors").glob("*.md"))
    if not frags:
        return "No group specifications are published yet.\n"
    return "\n".join(f"```{{include}} vectors/{f.name}\n:heading-offset: 1\n```\n" for f in frags)


def _changelog() -> str:
    if (ROOT / "CHANGELOG.md").exists():
        return "```{include} ../CHANGELOG.md\n```\n"
    return "# Changelog\n\nNo changelog has been written yet.\n"


#: Pages in the order the index lists them; any other page in docs/ follows.
PAGES = [
    "usage",
    "cli",
    "architecture",
    "implemented-standards",
    "conformance",
    "decisions",
    "errata",
    "tlsrpt-results",
    "reason-codes",
    "vectors",
    "state-machine",
    "lab",
    "scorecard",
    "interop",
    "tutorial-testing-to-enforce",
    "failure-model",
    "dane",
    "api",
    "changelog",
]


def _toctree_entries() -> str:
    present = {p.stem for p in DOCS.glob("*.md")} - {"index"}
    ordered = [p for p in PAGES if p in present]
    return "\n".join(ordered + sorted(present - set(ordered)))


_MARKERS = {
    "<!-- smtpsts:pages -->": _toctree_entries,
    "<!-- smtpsts:api -->": _api_markdown,
    "<!-- smtpsts:cli -->": _cli_markdown,
    "<!-- smtpsts:vectors -->": _vector_fragments,
    "<!-- smtpsts:changelog -->": _changelog,
}


@functools.cache
def _coverage() -> dict[str, tuple[int, int, int]]:
    """Return ``group -> (items, covered, not applicable)`` from tools/conformance.py."""
    spec = importlib.util.spec_from_file_location(
        "_smtpsts_conformance", ROOT / "tools" / "conformance.py"
    )
    if spec is None or spec.loader is None:
        return {}
    tool = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = tool
    spec.loader.exec_module(tool)
    matrix = tool.build(ROOT, ROOT / tool.IDS_FILE, ROOT / tool.NA_FILE)
    out = {}
    for group in matrix.groups():
        ids = [i for i in matrix.items.values() if i.group == group and not i.withdrawn]
        status = [matrix.status(i.ident) for i in ids]
        out[group] = (len(ids), status.count("covered"), status.count("n/a"))
    return out


def _status(match: re.Match[str]) -> str:
    group = match[1]
    if group not in _coverage():
        return "-"
    items, covered, na = _coverage()[group]
    text = f"{covered} of {items} items covered"
    if na:
        text += f", {na} not applicable"
    return f"{{ref}}`{text} <{group.lower()}>`"


def _fill_markers(_app: Any, _docname: str, source: list[str]) -> None:
    for marker, make in _MARKERS.items():
        if marker in source[0]:
            source[0] = source[0].replace(marker, make())
    source[0] = re.sub(r"<!-- smtpsts:status ([A-Z-]+) -->", _status, source[0])


def _import_target(target: str) -> Any:
    """Return the object a dotted ``smtpsts.`` name refers to, or ``None``."""
    parts = target.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except Exception:  # noqa: BLE001, S112 -- not a module (or one being written)
            continue
        if getattr(obj, "__file__", None) is None:
            return None  # a directory without __init__.py: a package not written yet
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def _resolve_alias(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """
    Resolve ``smtpsts.X`` (a re-export) to the name its object is documented under.

    Type hints name the defining module (``smtpsts.policy.Policy``, or the private
    ``smtpsts._vocab.ResultType``); docs often say ``smtpsts.Policy``. Both should link.
    """
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    domain = env.get_domain("py")
    if not target.startswith("smtpsts."):
        # A short name (a docstring's ``PolicyOutcome`` or ``SelectionStatus.FOUND``,
        # or an annotation only importable under TYPE_CHECKING): link it if exactly
        # one smtpsts object has a name ending that way.
        suffix = "." + target.lstrip(".~")
        hits = {
            full
            for full, entry in domain.objects.items()
            if full.startswith("smtpsts.") and full.endswith(suffix) and not entry.aliased
        }
        if len(hits) == 1:
            return domain.resolve_xref(
                env,
                node.get("refdoc"),
                app.builder,
                node.get("reftype"),
                hits.pop(),
                node,
                contnode,
            )
        return None
    obj = _import_target(target)
    if obj is None:
        # A layer the design plans but that is not written (or importable) yet:
        # plain text until it lands.
        return contnode if target.startswith(PLANNED) else None
    parts = target.split(".")
    candidates = []
    home = _defining_module(obj)
    qual = getattr(obj, "__qualname__", parts[-1])
    if home:
        candidates.append(f"{home}.{qual}")
    if id(obj) in _api_plan()[1]:
        candidates.append(_api_plan()[1][id(obj)])
    for cand in candidates:
        if cand != target and cand in domain.objects:
            return domain.resolve_xref(
                env, node.get("refdoc"), app.builder, node.get("reftype"), cand, node, contnode
            )
    return None


def _inline_attribute_guard(
    _app: Any, what: str, _name: str, _obj: Any, _options: Any, lines: list[str]
) -> None:
    """
    Keep napoleon from reading ``RFC 8461 §3.2: the largest ...`` as ``type: text``.

    Napoleon splits the first line of a data or attribute docstring on its first
    colon; house style starts such docstrings with an RFC citation. Types come
    from annotations here, so the split is never wanted. A leading line
    that renders as nothing turns it off.
    """
    if what in {"data", "attribute", "property"} and lines and lines[0].strip():
        # An escaped space: no colon for napoleon to split on, and no output.
        lines.insert(0, "\\ ")


#: Pages with generated parts: re-read on every build, since what they show
#: (pages, modules, commands, fragments, coverage) changes without them changing.
GENERATED_PAGES = ["index", "api", "cli", "vectors", "changelog", "implemented-standards"]


def _always_outdated(_app: Any, env: Any, _added: Any, _changed: Any, _removed: Any) -> list[str]:
    return [page for page in GENERATED_PAGES if page in env.found_docs]


def setup(app: Any) -> dict[str, Any]:
    app.connect("env-get-outdated", _always_outdated)
    # Before napoleon (priority 500) rewrites the docstring.
    app.connect("autodoc-process-docstring", _inline_attribute_guard, priority=400)
    app.connect("source-read", _fill_markers)
    app.connect("missing-reference", _resolve_alias)
    return {"parallel_read_safe": True}
