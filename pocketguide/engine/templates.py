"""Sandboxed Jinja rendering with StrictUndefined, and load-time checks of what a template needs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import concat

from pocketguide.engine.errors import TemplateError

# names every template may use besides the stage's inputs and vars
BUILTIN_NAMES = {"id", "input", "variant", "vars", "stage", "record", "schema", "teacher"}


def _tojson(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


def make_environment(templates_dir: Path) -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        autoescape=False,
    )
    env.filters["tojson"] = _tojson
    return env


@lru_cache(maxsize=32)
def environment(templates_dir: str) -> SandboxedEnvironment:
    return make_environment(Path(templates_dir))


def template_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def undeclared_names(templates_dir: Path, name: str, source: str | None = None) -> set[str]:
    """Top-level variables a template (and what it includes) reads from its context; `source` is an inline
    template's text (`name` then only labels it)."""
    env = environment(str(templates_dir))
    try:
        if source is None:
            source = env.loader.get_source(env, name)[0]  # type: ignore[union-attr]
        ast = env.parse(source)
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(f"template '{name}' not found under {templates_dir}") from exc
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template '{name}' line {exc.lineno}: {exc.message}") from exc
    names = set(meta.find_undeclared_variables(ast))
    for ref in meta.find_referenced_templates(ast):
        if ref and ref != name:
            names |= undeclared_names(templates_dir, ref)
    return names


_DICT_ATTRS = frozenset(dir(dict))  # `{{ x.items }}` is the method, not the key: left to Jinja


def _lookup_path(node: nodes.Node) -> tuple[str, ...] | None:
    """('source', 'text') for `source.text` or `source["text"]`; None for anything else."""
    keys: list[str] = []
    while isinstance(node, (nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Getattr) and node.attr not in _DICT_ATTRS:
            keys.append(node.attr)
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            keys.append(node.arg.value)
        else:
            return None
        node = node.node
    if not isinstance(node, nodes.Name):
        return None
    return (node.name, *reversed(keys))


def simple_parts(env: SandboxedEnvironment, source: str) -> list[str | tuple[str, ...]] | None:
    """A template that is only text and `{{ a.b.c }}` lookups, as [text, path, …]; None otherwise
    (filters, tags, calls, includes…): such templates render through Jinja."""
    body = env.parse(source).body
    if not body:
        return []
    if len(body) != 1 or not isinstance(body[0], nodes.Output):
        return None
    parts: list[str | tuple[str, ...]] = []
    for node in body[0].nodes:
        path = _lookup_path(node) if not isinstance(node, nodes.TemplateData) else None
        if isinstance(node, nodes.TemplateData):
            parts.append(node.data)
        elif path is None:
            return None
        else:
            parts.append(path)
    return parts


def template_tree(templates_dir: Path, name: str, inline: str | None = None) -> list[str]:
    """The template and every template it includes, imports or extends (recursively), in first-seen order.
    A dynamic name (`{% include var %}`) cannot be followed; the loader's checks already warn about those.
    `inline` is the text of an inline template (`name` then only labels it)."""
    env = environment(str(templates_dir))
    out: list[str] = []
    todo = [name]
    while todo:
        current = todo.pop(0)
        if current in out:
            continue
        out.append(current)
        try:
            source = inline if inline is not None and current == name else \
                env.loader.get_source(env, current)[0]  # type: ignore[union-attr]
            refs = meta.find_referenced_templates(env.parse(source))
        except (jinja2.TemplateNotFound, jinja2.TemplateSyntaxError):
            continue  # the file's own part (its hash, or None when missing) says it changed
        todo.extend(r for r in refs if r)
    return out


class Renderer:
    """Compiles one template once and renders it per record. A template that only prints text and
    dotted lookups of strings (`Answer: {{ source.question }}`) is filled in directly — the same output
    Jinja gives, a fraction of the cost; anything else (a missing key, a non-string value) goes to Jinja.
    `source` is an inline template's text (it may include files of the templates folder); `name` then
    labels it in errors and `path` is None."""

    def __init__(self, templates_dir: Path, name: str, source: str | None = None):
        self.name = name
        self.path: Path | None = templates_dir / name if source is None else None
        self.source = source
        env = environment(str(templates_dir))
        try:
            if source is None:
                self._template = env.get_template(name)
                source = env.loader.get_source(env, name)[0]  # type: ignore[union-attr]
            else:
                self._template = env.from_string(source)
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(f"template '{name}' not found under {templates_dir}") from exc
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"template '{name}' line {exc.lineno}: {exc.message}") from exc
        self._globals = dict(self._template.globals)
        text = self.source.encode() if self.source is not None else self.path.read_bytes()  # type: ignore[union-attr]
        self.sha1 = hashlib.sha1(text).hexdigest()  # which template text made a record (gens metadata)
        self.sha256 = hashlib.sha256(text).hexdigest()
        self._parts = simple_parts(env, source)

    @property
    def lookups(self) -> list[tuple[str, ...]] | None:
        """The dotted lookups a template of text and lookups prints (None: it needs Jinja)."""
        return None if self._parts is None else [p for p in self._parts if not isinstance(p, str)]

    @property
    def single_lookup(self) -> tuple[str, ...] | None:
        """The path of a template that is one `{{ a.b }}` and nothing else (None for any other)."""
        parts = self._parts
        return parts[0] if parts is not None and len(parts) == 1 and isinstance(parts[0], tuple) else None

    def filler(self) -> Callable[[dict[str, Any]], str | None] | None:
        """The fast path alone, as a function: the filled text, or None where `render` would need Jinja (None
        instead of a function when the template is not text and lookups). One `{{ a.b }}` gets its own."""
        parts = self._parts
        if parts is None:
            return None
        if len(parts) == 1 and isinstance(parts[0], tuple) and len(parts[0]) == 2:
            outer, inner = parts[0]

            def one_lookup(context: dict[str, Any]) -> str | None:
                value = context.get(outer)
                if type(value) is dict:
                    value = value.get(inner)
                    if type(value) is str:
                        return value
                return None

            return one_lookup
        return self._filled

    def _filled(self, context: dict[str, Any]) -> str | None:
        out = []
        for part in self._parts or ():
            if isinstance(part, str):
                out.append(part)
                continue
            value: Any = context
            for key in part:
                if type(value) is not dict or key not in value:
                    return None
                value = value[key]
            if type(value) is not str:
                return None
            out.append(value)
        return "".join(out)

    def render(self, context: dict[str, Any]) -> str:
        if self._parts is not None and (filled := self._filled(context)) is not None:
            return filled
        # new_context(shared=True) skips Jinja's per-call ChainMap of globals (≈2.5× faster on short
        # templates); the globals are merged in by hand so `range`, `dict`… still work.
        t = self._template
        try:
            return concat(t.root_render_func(t.new_context({**self._globals, **context}, shared=True)))
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"template '{self.name}': {exc.message}") from exc
        except jinja2.TemplateError as exc:  # sandbox violations and runtime errors
            raise TemplateError(f"template '{self.name}': {exc}") from exc
        except Exception as exc:  # Python errors of one record's values: `n + 1` on a string, range(10**9)…
            raise TemplateError(f"template '{self.name}': {type(exc).__name__}: {exc}") from exc
