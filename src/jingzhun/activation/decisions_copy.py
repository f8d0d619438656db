"""A placement's copy for the decision API: compiled once, each distinct rendering done once.

A decision's copy is a few short Jinja texts (a title and a body, in zh and in en) rendered
in the content sandbox (content_jinja). Rendering was most of a decision's time — about
30 µs a text in the sandbox against some 20 µs for everything else — while its inputs
repeat: a text reads a handful of values (`person.greeting`, `product.name`,
`product.reason`, each product's `name` in a loop), and many persons share them, as does
one person asking again.

So each text is compiled with the list of what it reads, found in its syntax tree. A copy
is rendered once per distinct tuple of those values and kept (`CopyRenderer.memo`,
bounded); a text that reads nothing (most titles) is rendered when compiled. What a text
reads in a way the list cannot follow (`products[1]`, `person` passed to a macro, a
filter over `products`) is read whole, so two contexts share a rendering only if
everything the text can see is equal: the cache can only miss, never answer wrongly.
The app-push length check (`channels.check_push`) runs on a miss only; its result is
what is kept.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from jinja2 import nodes

from jingzhun.activation.channels import Where, check_push
from jingzhun.activation.content_jinja import (
    CONTEXT,
    CompiledText,
    compile_texts,
    environment,
    render_text,
)
from jingzhun.activation.content_templates import MessageTemplate

LANGUAGES = ("zh", "en")
MEMO_LIMIT = 50_000  # renderings kept per placement; the memo starts again when full
_MISSING = object()
# ("person", "greeting"); ("products", "*", "name"): each item's; ("products", "#"): how many; ("coupon",): whole
Path = tuple[str, ...]


def reads_of(source: str, html: bool = False) -> frozenset[Path]:
    """What a text reads from its context, as paths; anything not followed is read whole."""
    tree = environment(html).parse(source)
    loops: dict[str, set[str]] = {}  # loop variable → the context values it iterates
    for loop in tree.find_all(nodes.For):
        if isinstance(loop.iter, nodes.Name) and isinstance(loop.target, nodes.Name) and loop.iter.name in CONTEXT:
            loops.setdefault(loop.target.name, set()).add(loop.iter.name)
    found: set[Path] = set()
    _walk(tree, None, loops, found)
    return frozenset(found)


def _walk(node: nodes.Node, parent: nodes.Node | None, loops: dict[str, set[str]], found: set[Path]) -> None:
    if isinstance(node, nodes.Name) and node.ctx == "load":
        attr = parent.attr if isinstance(parent, nodes.Getattr) and parent.node is node else None
        if node.name in CONTEXT:
            iterated = isinstance(parent, nodes.For) and parent.iter is node and isinstance(parent.target, nodes.Name)
            if iterated and len(loops.get(parent.target.name, ())) == 1:
                found.add((node.name, "#"))  # how many times the loop runs; its items' reads are found below
            else:
                found.add((node.name, attr) if attr else (node.name,))
        elif node.name in loops:
            sources = loops[node.name]
            for source in sources:
                found.add((source, "*", attr) if attr and len(sources) == 1 else (source,))
    for child in node.iter_child_nodes():
        _walk(child, node, loops, found)


_PLAIN = (str, int, float, type(None))


def _frozen(value: object) -> object:
    """A hashable stand-in for a context value (dicts and lists by content)."""
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, dict):
        return tuple((key, _frozen(item)) for key, item in value.items())
    if isinstance(value, list | tuple):
        return tuple(_frozen(item) for item in value)
    return value


def _value(context: Mapping[str, object], path: Path) -> object:
    """The value at `path` (see `Path`), frozen; _MISSING where the context has none."""
    try:
        value = context[path[0]]
    except KeyError:
        return _MISSING
    if len(path) == 1 or not isinstance(value, dict | list):
        return _frozen(value)
    if path[1] == "#":
        return len(value)
    if path[1] == "*":
        return tuple(_frozen(item.get(path[2], _MISSING)) if isinstance(item, dict) else _frozen(item)
                     for item in value)
    return _frozen(value.get(path[1], _MISSING)) if isinstance(value, dict) else _frozen(value)


@dataclass
class CopyRenderer:
    """One placement's texts per language, what they read, and the renderings done so far."""

    template: MessageTemplate
    channel: str
    texts: dict[str, dict[str, CompiledText]]
    reads: dict[str, tuple[Path, ...]]
    constant: dict[str, dict[str, str]]  # languages whose texts read nothing: rendered at compile time
    memo: dict[tuple, dict[str, str]] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def compile(cls, template: MessageTemplate, channel: str) -> CopyRenderer:
        """Compile and check every text (a broken one fails now, naming the template and the line)."""
        texts, reads = {}, {}
        for language in LANGUAGES:
            sources = template.texts(channel, language)
            if not sources:
                continue
            compiled = compile_texts(template, channel, language)
            compiled.pop("link", None)  # the decision API answers with product URLs, not a tracked link
            texts[language] = compiled
            reads[language] = tuple(sorted({path for part, source in sources.items()
                                             for path in reads_of(source, html=part == "html")}))
        renderer = cls(template, channel, texts, reads, {})
        for language, paths in reads.items():
            if not paths:
                renderer.constant[language] = renderer._render(language, {}, None)  # reads nothing
        return renderer

    def render(self, language: str, context: Mapping[str, object], person_id: str | None) -> dict[str, str]:
        """The texts of `language` in `context` (a mapping that may make its values on first use)."""
        if language in self.constant:
            return self.constant[language]
        try:
            key = (language, *(_value(context, path) for path in self.reads[language]))
            found = self.memo.get(key)
        except TypeError:  # a value that cannot be hashed: render every time
            return self._render(language, dict(context), person_id)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        rendered = self._render(language, dict(context), person_id)
        with self._lock:
            if len(self.memo) >= MEMO_LIMIT:
                self.memo.clear()
            self.memo[key] = rendered
        return rendered

    def _render(self, language: str, context: dict[str, object], person_id: str | None) -> dict[str, str]:
        parts = {part: render_text(self.template, text, context, person_id or "-")
                 for part, text in self.texts[language].items()}
        if self.channel == "app_push" and "title" in parts and "body" in parts:
            pushed = check_push(parts["title"], parts["body"], truncate=True,
                                where=Where(self.template.id, "app_push", language, person_id))
            parts["title"], parts["body"] = pushed.title or "", pushed.body
        return parts
