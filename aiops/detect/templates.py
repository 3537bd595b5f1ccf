"""Online log template mining: a Drain-style parse tree, written for streams.

Drain (He et al., ICWS 2017) groups log messages by token count, then by their first tokens,
and compares a message only with the few templates in that leaf: the most similar one absorbs it
when enough tokens agree, turning the positions that differ into ``<*>``. This module follows
that shape and adds what a long-running engine needs:

- **masking first**: one combined regular expression replaces variable parts (numbers, ids, IPs,
  paths, durations, timestamps...) by a placeholder before tokenizing. The default rule set is
  generic, one for every system;
- **caches in front of the tree**: most lines repeat a shape already seen, so a line is first
  looked up by its *digit-folded* bytes (every ASCII digit read as ``0``), then by its masked text;
  only a new shape walks the tree;
- **bounded memory**: at most ``max_templates`` templates (the least recently matched is evicted),
  lines cut at ``max_line_chars`` and ``max_tokens``, caches cleared when full;
- **stable ids** (see :func:`template_id`) and **versioned plain state** (``state()`` /
  :meth:`TemplateMiner.from_state`, JSON only, no pickle).

Example:

>>> miner = TemplateMiner()
>>> miner.add("connected to 10.0.0.1:8080 in 12ms").template
'connected to <*> in <*>'
>>> m = miner.add("connected to 10.0.0.7:443 in 3ms")
>>> m.template, m.is_new, m.size
('connected to <*> in <*>', False, 2)
>>> m.template_id == miner.add("connected to db.local:5432 in 9ms").template_id
True
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field, fields
from hashlib import blake2b
from typing import Any, NamedTuple

from aiops.errors import StateError

__all__ = [
    "DEFAULT_MASKS",
    "WILDCARD",
    "Match",
    "MaskRule",
    "MinerConfig",
    "TemplateMiner",
    "TemplateStateError",
    "template_id",
]

STATE_VERSION = 1
WILDCARD = "<*>"


class TemplateStateError(StateError, ValueError):
    """Saved miner state that cannot be loaded (unknown version, broken layout)."""


@dataclass(frozen=True)
class MaskRule:
    """Text matching ``pattern`` becomes ``placeholder`` before the line is tokenized."""

    pattern: str
    placeholder: str = WILDCARD


# Delimiters that end a variable: whitespace and the punctuation around values in key=value,
# lists, calls and quotes. A "word" between delimiters that holds a digit is a variable.
_DELIM = r"\s=,;:()\[\]{}<>\"'|"

#: One generic rule set for every system. Order matters: earlier rules win where they overlap.
DEFAULT_MASKS: tuple[MaskRule, ...] = (
    # timestamps (ISO 8601 and "date time" with optional fraction and zone), before numbers
    MaskRule(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?"),
    # UUIDs and IPv6 addresses (hex groups joined by ':' would otherwise split on ':')
    MaskRule(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"),
    MaskRule(r"(?<![\w:])(?:[0-9a-fA-F]{1,4}:){2,7}[0-9a-fA-F]{1,4}(?![\w:])"),
    # IPv4 with an optional port
    MaskRule(r"(?<![\w.])\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?::\d{1,5})?(?![\w.])"),
    # any other word holding a digit: numbers (signed, decimal), hex ids, block ids (blk_-12),
    # durations (12ms), versions, paths with digits, the value of key=value
    MaskRule(rf"(?<![^{_DELIM}])[^{_DELIM}]*?\d[^{_DELIM}]*"),
)


@dataclass(frozen=True)
class MinerConfig:
    """How lines are masked, tokenized and grouped; the same for every system."""

    masks: tuple[MaskRule, ...] = DEFAULT_MASKS
    depth: int = 4  # tree depth as in Drain: token count, then depth - 2 leading tokens, then the leaf
    sim_threshold: float = 0.5  # share of a template's tokens a line must match to join it
    max_children: int = 100  # children per tree node; more go to the wildcard child
    max_templates: int = 10_000  # beyond this the least recently matched template is evicted
    max_line_chars: int = 4096  # longer lines are cut (after the cut the line is mined as usual)
    max_tokens: int = 256  # tokens beyond this are dropped
    cache_size: int = 65_536  # entries per line cache; a full cache is cleared
    fold_digits: bool = True  # cache lines by their digit-folded bytes (masks must treat all digits alike)

    def to_json(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["masks"] = [[m.pattern, m.placeholder] for m in self.masks]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> MinerConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise TemplateStateError(f"unknown miner config keys: {sorted(unknown)}")
        kw = dict(d)
        if "masks" in kw:
            kw["masks"] = tuple(MaskRule(str(p), str(h)) for p, h in kw["masks"])
        return cls(**kw)


class Match(NamedTuple):
    """What :meth:`TemplateMiner.add` found for one line."""

    template_id: str  # stable: survives generalization, save/load; see template_id()
    template: str  # tokens joined by one space, variables as <*>
    is_new: bool  # this line created the template
    size: int  # lines matched by the template so far, this one included


def template_id(tokens: list[str] | tuple[str, ...]) -> str:
    """The id of a template: a 64-bit BLAKE2b hash of its *first* masked token sequence.

    The first line of a template fixes its id for good: later lines only turn positions into
    ``<*>``, which changes the template text but not the id, and the id is saved with the state.
    Two different templates get the same id only if their first lines mask to the same token
    sequence, which the miner never lets happen while both are alive (that line joins the live
    one), or by a 64-bit hash collision (about 3e-8 for a million templates), which the miner
    detects among live templates and resolves with a ``~n`` suffix. After an eviction, the same
    first sequence brings back the same id: it is the same template seen again, not a new one.
    """
    return blake2b("\x1f".join(tokens).encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


class _Cluster:
    __slots__ = ("id", "tokens", "template", "size", "route", "wild", "alive")

    def __init__(self, cid: str, tokens: list[str], route: tuple[str, ...], size: int = 0) -> None:
        self.id = cid
        self.tokens = tokens
        self.template = " ".join(tokens)
        self.size = size
        self.route = route
        self.wild = tokens.count(WILDCARD)
        self.alive = True


_FOLD = bytes.maketrans(b"123456789", b"000000000")
_HAS_DIGIT = re.compile(r"\d")


@dataclass
class _Leaf:
    clusters: list[_Cluster] = field(default_factory=list)


class TemplateMiner:
    """Online template miner; one per stream of related lines (a service, a component)."""

    def __init__(self, config: MinerConfig | None = None) -> None:
        self.config = cfg = config or MinerConfig()
        if cfg.depth < 3:
            raise ValueError("depth must be >= 3 (token count, >= 1 leading token, leaf)")
        if not 0.0 < cfg.sim_threshold <= 1.0:
            raise ValueError("sim_threshold must be in (0, 1]")
        if cfg.max_templates < 1 or cfg.max_children < 2 or cfg.max_tokens < 1 or cfg.max_line_chars < 1:
            raise ValueError("max_templates, max_children, max_tokens and max_line_chars must be positive")
        self._mask = _compile_masks(cfg.masks)
        self._prefix = cfg.depth - 2
        self._clusters: OrderedDict[str, _Cluster] = OrderedDict()  # least recently matched first
        self._leaves: dict[tuple[Any, ...], list[_Cluster]] = {}
        self._children: dict[tuple[Any, ...], set[str]] = {}
        self._key_cache: dict[bytes, _Cluster] = {}
        self._masked_cache: dict[str, _Cluster] = {}

    # ------------------------------------------------------------------ public API
    def __len__(self) -> int:
        return len(self._clusters)

    def add(self, message: str) -> Match:
        """Mine one line: the template it belongs to (created if none fits)."""
        if len(message) > self.config.max_line_chars:
            message = message[: self.config.max_line_chars]
        key = message.encode("utf-8", "surrogatepass").translate(_FOLD) if self.config.fold_digits else None
        c = self._key_cache.get(key) if key is not None else None  # type: ignore[arg-type]
        new = False
        if c is None or not c.alive:
            c, new = self._slow(message, key)
        c.size += 1
        self._clusters.move_to_end(c.id)
        return Match(c.id, c.template, new, c.size)

    def add_batch(self, messages: list[str]) -> list[Match]:
        """:meth:`add` over a list, in order (the same results, less overhead per line)."""
        out = []
        append = out.append
        max_chars = self.config.max_line_chars
        fold = self.config.fold_digits
        get = self._key_cache.get
        touch = self._clusters.move_to_end
        slow = self._slow
        for message in messages:
            if len(message) > max_chars:
                message = message[:max_chars]
            if fold:
                key: bytes | None = message.encode("utf-8", "surrogatepass").translate(_FOLD)
                c = get(key)  # type: ignore[arg-type]
            else:
                key, c = None, None
            if c is None or not c.alive:
                c, new = slow(message, key)
            else:
                new = False
            c.size += 1
            touch(c.id)
            append(Match(c.id, c.template, new, c.size))
        return out

    def templates(self) -> list[tuple[str, str, int]]:
        """(id, template, size) of every live template, most recently matched last."""
        return [(c.id, c.template, c.size) for c in self._clusters.values()]

    def template(self, tid: str) -> str | None:
        c = self._clusters.get(tid)
        return c.template if c is not None else None

    def mask(self, message: str) -> str:
        """The line as the miner sees it after masking (for inspection and tests)."""
        return self._mask(message[: self.config.max_line_chars])

    # ------------------------------------------------------------------ state
    def state(self) -> dict[str, Any]:
        """Plain JSON-able state: the config and every live template, least recently matched first."""
        return {
            "version": STATE_VERSION,
            "config": self.config.to_json(),
            "templates": [
                {"id": c.id, "tokens": list(c.tokens), "size": c.size, "route": list(c.route)}
                for c in self._clusters.values()
            ],
        }

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> TemplateMiner:
        """Rebuild a miner from :meth:`state`; refuses unknown versions and broken layouts."""
        if not isinstance(d, dict):
            raise TemplateStateError("miner state must be a dict")
        version = d.get("version")
        if version != STATE_VERSION:
            raise TemplateStateError(f"unknown template miner state version {version!r} (this code reads {STATE_VERSION})")
        try:
            miner = cls(MinerConfig.from_json(d["config"]))
            for t in d["templates"]:
                tokens = [str(x) for x in t["tokens"]]
                route = tuple(str(x) for x in t["route"])
                cid, size = str(t["id"]), int(t["size"])
                if cid in miner._clusters or size < 0 or not tokens:
                    raise TemplateStateError(f"bad template entry {cid!r}")
                miner._insert(_Cluster(cid, tokens, route, size))
        except TemplateStateError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise TemplateStateError(f"broken template miner state: {exc!r}") from exc
        return miner

    # ------------------------------------------------------------------ internals
    def _slow(self, message: str, key: bytes | None) -> tuple[_Cluster, bool]:
        cfg = self.config
        masked = self._mask(message)
        c = self._masked_cache.get(masked)
        new = False
        if c is None or not c.alive:
            tokens = masked.split()
            if len(tokens) > cfg.max_tokens:
                tokens = tokens[: cfg.max_tokens]
            c, new = self._match_or_create(tokens)
            if len(self._masked_cache) >= cfg.cache_size:
                self._masked_cache.clear()
            self._masked_cache[masked] = c
        if key is not None and not _HAS_DIGIT.search(masked):
            # every digit was masked, so any line with the same folded bytes masks the same way
            if len(self._key_cache) >= cfg.cache_size:
                self._key_cache.clear()
            self._key_cache[key] = c
        return c, new

    def _route(self, tokens: list[str], create: bool) -> tuple[str, ...] | None:
        """The tree path of a token sequence: leading tokens, wildcard where a node is full."""
        n = len(tokens)
        path: tuple[Any, ...] = (n,)
        for tok in tokens[: self._prefix]:
            kids = self._children.get(path)
            if kids is None:
                kids = set()
                if create:
                    self._children[path] = kids
            if tok not in kids:
                if WILDCARD in tok:
                    tok = WILDCARD
                elif len(kids) >= self.config.max_children:
                    tok = WILDCARD
                elif not create:
                    # an unseen token: its leaf is empty; the wildcard branch may still hold a match
                    tok = WILDCARD if WILDCARD in kids else tok
                if create:
                    kids.add(tok)
            path = path + (tok,)
        return path[1:]

    def _match_or_create(self, tokens: list[str]) -> tuple[_Cluster, bool]:
        route = self._route(tokens, create=False)
        assert route is not None
        leaf = self._leaves.get((len(tokens),) + route)
        best = None
        if leaf:
            best = self._best(leaf, tokens)
        if best is not None:
            self._merge(best, tokens)
            return best, False
        if not tokens:
            tokens = [""]
        route = self._route(tokens, create=True)
        assert route is not None
        cid = template_id(tokens)
        if cid in self._clusters:  # hash collision with a live template (or its first line re-created it)
            n = 1
            while f"{cid}~{n}" in self._clusters:
                n += 1
            cid = f"{cid}~{n}"
        c = _Cluster(cid, list(tokens), route)
        while len(self._clusters) >= self.config.max_templates:
            self._evict()
        self._insert(c)
        return c, True

    def _best(self, leaf: list[_Cluster], tokens: list[str]) -> _Cluster | None:
        n = len(tokens)
        best, best_sim, best_wild = None, -1.0, -1
        th = self.config.sim_threshold
        for c in leaf:
            same = 0
            mism = 0
            for t, x in zip(c.tokens, tokens):
                if t == x:
                    if t != WILDCARD:
                        same += 1
                elif t != WILDCARD:
                    mism += 1
            sim = 1.0 + c.wild if mism == 0 else same / n
            if sim > best_sim or (sim == best_sim and c.wild > best_wild):
                best, best_sim, best_wild = c, sim, c.wild
        if best is not None and best_sim >= th:
            return best
        return None

    def _merge(self, c: _Cluster, tokens: list[str]) -> None:
        tpl = c.tokens
        changed = False
        for i, (t, x) in enumerate(zip(tpl, tokens)):
            if t != x and t != WILDCARD:
                tpl[i] = WILDCARD
                changed = True
        if changed:
            c.template = " ".join(tpl)
            c.wild = tpl.count(WILDCARD)

    def _insert(self, c: _Cluster) -> None:
        n = len(c.tokens)
        path: tuple[Any, ...] = (n,)
        for tok in c.route:
            self._children.setdefault(path, set()).add(tok)
            path = path + (tok,)
        self._leaves.setdefault(path, []).append(c)
        self._clusters[c.id] = c

    def _evict(self) -> None:
        _, c = self._clusters.popitem(last=False)
        c.alive = False
        path = (len(c.tokens),) + c.route
        leaf = self._leaves.get(path)
        if leaf is not None:
            leaf.remove(c)
            if not leaf:
                del self._leaves[path]


def _compile_masks(masks: tuple[MaskRule, ...]) -> Any:
    """One callable applying every rule in order; rules sharing a placeholder run as one regex."""
    if not masks:
        return lambda s: s
    steps: list[tuple[re.Pattern[str], str]] = []
    for m in masks:
        re.compile(m.pattern)  # fail early on a bad rule, with the rule's own error
        if steps and steps[-1][1] == m.placeholder:
            prev = steps[-1][0].pattern
            steps[-1] = (re.compile(f"{prev}|(?:{m.pattern})"), m.placeholder)
        else:
            steps.append((re.compile(f"(?:{m.pattern})"), m.placeholder))
    if len(steps) == 1:
        rx, ph = steps[0]
        repl = ph.replace("\\", "\\\\")
        sub = rx.sub
        return lambda s: sub(repl, s)

    def apply(s: str) -> str:
        for rx, ph in steps:
            s = rx.sub(ph.replace("\\", "\\\\"), s)
        return s

    return apply
