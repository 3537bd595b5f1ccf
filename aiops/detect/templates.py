"""Online log template mining: a Drain-style parse tree, written for streams.

Drain (He et al., ICWS 2017) groups log messages by token count, then by their first tokens,
and compares a message only with the few templates in that leaf: the most similar one absorbs it
when enough tokens agree, and the positions that differ become ``<*>``. This miner keeps that
shape and adds what a long-running engine needs:

- **masking first**: one regular expression replaces variables (numbers, ids, IPs, host:port,
  paths and versions with digits, durations and sizes, timestamps, account names) by ``<*>``
  before tokenizing. :data:`DEFAULT_MASKS` is generic: one rule set for every system;
- **grouping rules that hold across systems** (each measured on Loghub-2k, see
  ``benchmarks/loghub.py``): similarity counts only the positions where neither side holds a
  variable (a token that fits a partly variable one, "rhost=<*>" / "rhost=example.org", and
  another value of the same key, "tag=a" / "tag=b", count as variables); two *different plain
  words* at one position ("Started"/"Stopped", "HTTPS"/"SOCKS5") are two templates, however
  similar the rest; the tree routes on leading tokens only when they are plain words (a leading
  host, path or class name goes to the ``<*>`` branch); and a line whose variables span a
  different number of tokens ("850 bytes" / "1190 bytes (1.16 KB)") joins the template whose
  *shape* (runs of variables collapsed) it shares;
- **caches in front of the tree**: a line is looked up by its *digit-folded* bytes (every ASCII
  digit read as ``0``), then by its masked text; only a new shape is masked and searched;
- **bounded memory**: at most ``max_templates`` templates (the least recently matched is
  evicted, with the tree nodes only it used), lines cut at ``max_line_chars`` and
  ``max_tokens``, every cache cleared when it reaches ``cache_size``;
- **stable ids** (:func:`template_id`) and **versioned plain state** (:meth:`TemplateMiner.state`,
  :meth:`TemplateMiner.from_state`: JSON-able data only, no pickle).

A miner is not thread-safe; use one per stream (per service, see ``add``).

>>> miner = TemplateMiner()
>>> miner.add("connected to 10.0.0.1:8080 in 12ms").template
'connected to <*> in <*>'
>>> m = miner.add("connected to 10.0.0.7:443 in 3ms")
>>> m.template, m.is_new, m.size
('connected to <*> in <*>', False, 2)
>>> miner.add("connected to db.local:5432 in 9ms").template_id == m.template_id
True
>>> miner.add("user alice logged in").template
'user <*> logged in'
"""

from __future__ import annotations

import functools
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from hashlib import blake2b
from typing import Any, NamedTuple

from aiops.errors import StateError

__all__ = [
    "DEFAULT_MASKS",
    "DEFAULT_VARIABLES",
    "WILDCARD",
    "MaskRule",
    "Match",
    "MinerConfig",
    "Template",
    "TemplateMiner",
    "TemplateStateError",
    "template_id",
]

STATE_VERSION = 1
WILDCARD = "<*>"


class TemplateStateError(StateError, ValueError):
    """Saved miner state that cannot be loaded: unknown version or broken layout."""


@dataclass(frozen=True)
class MaskRule:
    """Text matching ``pattern`` becomes ``placeholder`` before the line is tokenized.

    With ``MinerConfig.fold_digits`` (the default) a rule must treat all digits alike (``\\d``,
    ``[0-9]``, never a particular digit): lines differing only in digit values share one cache
    entry. Rules run in order; consecutive rules with the same placeholder run as one regex.
    """

    pattern: str
    placeholder: str = WILDCARD


# Delimiters end a variable: whitespace and the punctuation around values in key=value, lists,
# calls and quotes. A "word" runs between two delimiters; '.', '/', '-', '_', '@' stay inside.
_DELIM = r"\s=,;:()\[\]{}<>\"'|"
_WORD = rf"[^{_DELIM}]"
_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_HEX = r"[0-9a-fA-F]"

#: The kinds of variable the default rule set masks, each matched from the start of a word;
#: where several match at one place, the earlier kind wins.
DEFAULT_VARIABLES: dict[str, str] = {
    # timestamps: ctime / syslog ("Fri Jul  1 07:57:30 2005"), ISO 8601 and "date time" with
    # fraction and zone, the common log format's "04/Dec/2005:04:47:44 +0000"
    "ctime": rf"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),?\s+)?{_MONTH}\s+\d{{1,2}},?\s+(?:\d{{4}}\s+)?"
    r"\d\d:\d\d:\d\d(?:[.,]\d+)?(?:\s+[A-Z]{3,4}\b)?(?:\s+\d{4}\b)?",
    "iso_time": r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?",
    "clf_time": rf"\d{{1,2}}/{_MONTH}/\d{{4}}:\d\d:\d\d:\d\d(?:\s+[+-]\d{{4}})?",
    # account names, the commonest variable without a digit: "user NAME", "user=NAME",
    # "for NAME from"
    "user": rf"(?<=\buser[ =]){_WORD}+",
    "for_from": rf"(?<=\bfor ){_WORD}+(?= from\b)",
    # UUIDs; IPv6 and MAC addresses (hex groups joined by ':', a delimiter otherwise)
    "uuid": rf"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}\b",
    "ipv6_mac": rf"(?:{_HEX}{{0,4}}:){{2,7}}{_HEX}{{1,4}}(?![\w:])",
    # IPv4 and host names with a port: one variable, not "<*>:<*>"
    "ipv4_port": r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?::\d{1,5})?(?![\w.])",
    "host_port": rf"(?:[\w-]+\.)+[A-Za-z][\w-]*:\d{{1,5}}(?!{_WORD})",
    # quantities with a unit of size or time: "93.0 B", "5.2 KB", "12 ms", "3 seconds"
    "quantity": r"[-+]?\d+(?:\.\d+)?\s?(?:[KMGTP]i?B|B|[Bb]ytes?|[mun]?s|secs?|seconds?|mins?|minutes?"
    r"|hours?|days?)(?!\w)",
    # hex ids: a word of 4+ hex digits holding a decimal digit ("de9231d", "0f3a")
    "hex": rf"(?={_HEX}*\d){_HEX}{{4,}}(?!{_WORD})",
    # any other word holding a number: a digit not glued to a letter, one letter then a digit,
    # or 3+ digits in a row. Numbers (signed, decimal, 0x..), block ids (blk_-12), durations
    # (12ms), versions (v6.1.7601, HTTP/1.1), paths with digits, key=value values, node names
    # (node-12, R02-M1, dn228). Words like "SOCKS5", "ssh2", "eth0", "IPv4" stay words.
    "number_word": rf"{_WORD}*?(?:(?<![A-Za-z])\d|(?<![A-Za-z])[A-Za-z]\d|\d\d\d){_WORD}*+",
}
_NEEDS_NO_DIGIT = ("ctime", "user", "for_from")  # the other kinds hold a digit before the next space


def _default_pattern() -> str:
    free = "|".join(f"(?:{DEFAULT_VARIABLES[k]})" for k in _NEEDS_NO_DIGIT)
    gated = "|".join(f"(?:{v})" for k, v in DEFAULT_VARIABLES.items() if k not in _NEEDS_NO_DIGIT)
    # tried only where a word starts; the lookahead skips the digit-bearing kinds at once for
    # the many words without a digit
    return rf"(?<!{_WORD})(?:{free}|(?=\S*?\d)(?:{gated}))"


#: One generic rule set for every system: every kind in :data:`DEFAULT_VARIABLES` becomes ``<*>``.
#: To extend it, put your rules first: ``masks=(MaskRule(r"..."), *DEFAULT_MASKS)``.
DEFAULT_MASKS: tuple[MaskRule, ...] = (MaskRule(_default_pattern()),)


@dataclass(frozen=True)
class MinerConfig:
    """How lines are masked, tokenized and grouped: one configuration for every system."""

    masks: tuple[MaskRule, ...] = DEFAULT_MASKS
    depth: int = 4  # as in Drain: token count, depth - 2 leading tokens, then the leaf
    sim_threshold: float = 0.7  # share of comparable tokens a line must share with a template to join it
    max_children: int = 100  # children per tree node; further tokens go to the <*> child
    max_templates: int = 5_000  # beyond this the least recently matched template is evicted (~2.5 kB each)
    max_line_chars: int = 4096  # longer lines are cut to this many characters first
    max_tokens: int = 256  # tokens past this many are dropped
    cache_size: int = 32_768  # entries per cache (folded lines, masked lines, words); cleared when full
    fold_digits: bool = True  # cache by digit-folded bytes (needs masks that treat all digits alike)

    def __post_init__(self) -> None:
        for name in ("depth", "max_children", "max_templates", "max_line_chars", "max_tokens", "cache_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise TypeError(f"MinerConfig.{name} must be an int, got {v!r}")
        if self.depth < 3:
            raise ValueError("MinerConfig.depth must be >= 3 (token count, a leading token, the leaf)")
        if self.max_children < 2 or min(self.max_templates, self.max_line_chars, self.max_tokens, self.cache_size) < 1:
            raise ValueError("MinerConfig: max_children must be >= 2 and the other limits >= 1")
        if not isinstance(self.sim_threshold, (int, float)) or not 0.0 < self.sim_threshold <= 1.0:
            raise ValueError("MinerConfig.sim_threshold must be in (0, 1]")
        if not isinstance(self.fold_digits, bool):
            raise TypeError("MinerConfig.fold_digits must be a bool")
        for m in self.masks:
            if not isinstance(m, MaskRule) or not isinstance(m.pattern, str) or not isinstance(m.placeholder, str):
                raise TypeError(f"MinerConfig.masks holds {m!r}, not a MaskRule of two strings")
            try:
                re.compile(m.pattern)
            except re.error as exc:
                raise ValueError(f"mask pattern {m.pattern!r} does not compile: {exc}") from exc

    def to_json(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["masks"] = [[m.pattern, m.placeholder] for m in self.masks]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> MinerConfig:
        """The inverse of :meth:`to_json`; unknown keys are refused."""
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown MinerConfig keys: {sorted(unknown)}")
        kw = dict(d)
        if "masks" in kw:
            kw["masks"] = tuple(MaskRule(*rule) for rule in kw["masks"])
        return cls(**kw)


class Match(NamedTuple):
    """What :meth:`TemplateMiner.add` found for one line."""

    template_id: str  # stable: survives generalization and save/load (see template_id())
    template: str  # the template's tokens joined by one space, variables as <*>
    is_new: bool  # this line created the template
    size: int  # lines the template has matched, this one included


class Template(NamedTuple):
    """A live template, as :meth:`TemplateMiner.templates` lists it."""

    template_id: str
    template: str
    size: int


def template_id(tokens: Sequence[str]) -> str:
    """The id of a template: a 64-bit BLAKE2b hash of its *first* masked token sequence.

    The first line of a template fixes its id for good: later lines only turn positions into
    ``<*>``, which changes the template's text but not its id, and the id is saved with the
    state. Ids are the same in every process that mines the same first line (no counter to
    keep in step), and two templates get one id only if their first lines mask to the same
    token sequence, which cannot happen while both are alive (such a line joins the live one),
    or by a 64-bit collision (about 3e-8 for a million templates), which the miner detects among
    live templates and resolves with a ``~n`` suffix. After an eviction, the same first line
    brings back the same id: it is the same template seen again (then ``is_new`` again), never
    a different template under a reused id.
    """
    return blake2b("\x1f".join(tokens).encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


class _Cluster:
    __slots__ = ("alive", "id", "route", "shapes", "size", "template", "tokens", "wild")

    def __init__(self, cid: str, tokens: list[str], route: tuple[str, ...], size: int = 0) -> None:
        self.id = cid
        self.tokens = tokens  # the template, one entry per token; generalizes in place
        self.template = " ".join(tokens)
        self.size = size
        self.route = route  # the tree path under the token count, fixed at creation
        self.wild = tokens.count(WILDCARD)
        self.shapes: list[str] = []  # keys of this template in TemplateMiner._shapes
        self.alive = True  # False once evicted: cache entries pointing here are stale


class _Guard:
    """A folded-line cache entry for a line whose masked text kept digits ("ssh2"): it holds
    only for lines with the same digits at the same places."""

    __slots__ = ("cluster", "digits", "positions")

    def __init__(self, cluster: _Cluster, positions: tuple[int, ...], digits: str) -> None:
        self.cluster, self.positions, self.digits = cluster, positions, digits


_FOLD = bytes.maketrans(b"123456789", b"000000000")
_DIGIT = re.compile(r"\d")
_make = tuple.__new__
_KEPT = "aiops_kept_digit"  # regex group name for a digit no mask covered
_MAX_KEPT_DIGITS = 8  # a line keeping more unmasked digits is not cached by its folded bytes
_MAX_SHAPES = 8  # shapes remembered per template
# a token made only of variables and punctuation: "<*>", "(<*>)", "<*>:<*>", "[<*>]"
_VARIABLE_ONLY = re.compile(r"(?:[^\s\w]*<\*>)+[^\s\w]*\Z").match
# a plain word: letters (any script), '_' and '-', at most two trailing digits ("SOCKS5",
# "eth0"), optional quotes, trailing sentence punctuation
_PLAIN = re.compile(r"['\"]?(?:[^\W\d]|-)+\d{0,2}['\"]?[.,;:!?]*\Z").match


class TemplateMiner:
    """Online template miner for one stream of related lines.

    ``add`` returns the line's template at once; the template's id never changes, its text
    only generalizes. Per service is the natural unit: templates of different programs do not
    mix, ids are reproducible, and one service's burst of new shapes cannot evict another's.
    """

    def __init__(self, config: MinerConfig | None = None) -> None:
        self.config = cfg = config or MinerConfig()
        self._mask, self._kept = _compile_masks(cfg.masks)
        self._prefix = cfg.depth - 2
        self._clusters: OrderedDict[str, _Cluster] = OrderedDict()  # least recently matched first
        self._leaves: dict[tuple[Any, ...], list[_Cluster]] = {}  # (token count, *route) -> templates
        self._children: dict[tuple[Any, ...], set[str]] = {}  # tree node -> its child tokens
        self._shapes: dict[str, _Cluster] = {}  # variable runs collapsed -> template
        self._key_cache: dict[bytes, _Cluster | _Guard] = {}  # digit-folded line -> template
        self._masked_cache: dict[str, _Cluster] = {}  # masked line -> template
        self._plain_cache: dict[str, bool] = {}  # token -> is a plain word
        self._max_chars, self._fold = cfg.max_line_chars, cfg.fold_digits
        self._key_get, self._touch = self._key_cache.get, self._clusters.move_to_end

    def __len__(self) -> int:
        """The number of live templates."""
        return len(self._clusters)

    def add(self, message: str) -> Match:
        """Mine one line: the template it belongs to, created if none fits."""
        if len(message) > self._max_chars:
            message = message[: self._max_chars]
        key = None
        v: Any = None
        if self._fold:
            try:
                key = message.encode().translate(_FOLD)
            except UnicodeEncodeError:  # lone surrogates
                key = message.encode("utf-8", "surrogatepass").translate(_FOLD)
            v = self._key_get(key)
            if v is not None and v.__class__ is not _Cluster:  # a _Guard
                v = v.cluster if "".join([message[i] for i in v.positions]) == v.digits else None
        if v is None or not v.alive:
            v, new = self._slow(message, key)
            v.size += 1
            self._touch(v.id)
            return _make(Match, (v.id, v.template, new, v.size))
        v.size += 1
        self._touch(v.id)
        return _make(Match, (v.id, v.template, False, v.size))

    def add_batch(self, messages: Sequence[str]) -> list[Match]:
        """:meth:`add` for each line in order: the same results, less overhead per line."""
        out: list[Match] = []
        append = out.append
        max_chars = self.config.max_line_chars
        fold = self.config.fold_digits
        get = self._key_cache.get
        touch = self._clusters.move_to_end
        slow = self._slow
        cluster_cls = _Cluster
        make = _make
        for message in messages:
            if len(message) > max_chars:
                message = message[:max_chars]
            key = None
            v: Any = None
            if fold:
                try:
                    key = message.encode().translate(_FOLD)
                except UnicodeEncodeError:
                    key = message.encode("utf-8", "surrogatepass").translate(_FOLD)
                v = get(key)
                if v is not None and v.__class__ is not cluster_cls:
                    v = v.cluster if "".join([message[i] for i in v.positions]) == v.digits else None
            if v is not None and v.alive:
                c, new = v, False
            else:
                c, new = slow(message, key)
            c.size += 1
            touch(c.id)
            append(make(Match, (c.id, c.template, new, c.size)))
        return out

    def templates(self) -> list[Template]:
        """Every live template, least recently matched first."""
        return [Template(c.id, c.template, c.size) for c in self._clusters.values()]

    def template(self, tid: str) -> str | None:
        """The current text of a live template, or None."""
        c = self._clusters.get(tid)
        return c.template if c is not None else None

    def mask(self, message: str) -> str:
        """The line as the miner sees it after masking (for inspection and tests)."""
        return self._mask(message[: self.config.max_line_chars])

    # ------------------------------------------------------------------ state
    def state(self) -> dict[str, Any]:
        """Plain JSON-able state: version, config and the live templates, least recently matched first.

        Caches are not saved; a loaded miner refills them as lines come.
        """
        return {
            "version": STATE_VERSION,
            "config": self.config.to_json(),
            "templates": [
                {"id": c.id, "tokens": list(c.tokens), "size": c.size, "route": list(c.route), "shapes": list(c.shapes)}
                for c in self._clusters.values()
            ],
        }

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> TemplateMiner:
        """A miner rebuilt from :meth:`state`; unknown versions and broken layouts raise
        :class:`TemplateStateError` (a ``ValueError``)."""
        if not isinstance(d, dict):
            raise TemplateStateError("template miner state must be a dict")
        version = d.get("version")
        if version != STATE_VERSION or isinstance(version, bool):
            raise TemplateStateError(
                f"unknown template miner state version {version!r} (this code reads {STATE_VERSION})"
            )
        try:
            miner = cls(MinerConfig.from_json(d["config"]))
            for t in d["templates"]:
                cid, size, tokens, route = t["id"], t["size"], t["tokens"], t["route"]
                shapes = t.get("shapes", [])
                strings = (cid, *tokens, *route, *shapes)
                if not all(isinstance(x, str) for x in strings) or not isinstance(size, int) or size < 0:
                    raise TemplateStateError(f"bad template entry {cid!r}")
                if cid in miner._clusters or len(route) != min(len(tokens), miner._prefix):
                    raise TemplateStateError(f"bad template entry {cid!r}")
                if len(miner._clusters) >= miner.config.max_templates:
                    miner._evict()
                c = _Cluster(cid, list(tokens), tuple(route), size)
                miner._insert(c)
                for shape in shapes:
                    miner._add_shape(c, shape)
        except TemplateStateError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise TemplateStateError(f"broken template miner state: {exc!r}") from exc
        return miner

    # ------------------------------------------------------------------ internals
    def _slow(self, message: str, key: bytes | None) -> tuple[_Cluster, bool]:
        """A line not in the folded-line cache: mask it, then the masked-line cache or the tree."""
        cfg = self.config
        masked = self._mask(message)
        c = self._masked_cache.get(masked)
        new = False
        if c is None or not c.alive:
            c, new = self._match_or_create(masked)
            if len(self._masked_cache) >= cfg.cache_size:
                self._masked_cache.clear()
            self._masked_cache[masked] = c
        if key is not None:
            entry: _Cluster | _Guard | None = c
            if _DIGIT.search(masked):
                # digits no mask covered ("ssh2"): under masks that treat all digits alike, a
                # line with the same folded bytes masks the same way except for these digits
                positions = self._kept_digits(message)
                entry = None if positions is None else _Guard(c, positions, "".join([message[i] for i in positions]))
            if entry is not None:
                if len(self._key_cache) >= cfg.cache_size:
                    self._key_cache.clear()
                self._key_cache[key] = entry
        return c, new

    def _kept_digits(self, message: str) -> tuple[int, ...] | None:
        """Where the digits no mask covered are; None if too many or the masks run in steps."""
        if self._kept is None:
            return None
        positions = tuple(m.start() for m in self._kept(message) if m.lastgroup == _KEPT)
        return positions if len(positions) <= _MAX_KEPT_DIGITS else None

    def _match_or_create(self, masked: str) -> tuple[_Cluster, bool]:
        tokens = masked.split()
        if len(tokens) > self.config.max_tokens:
            tokens = tokens[: self.config.max_tokens]
        leaf = self._leaves.get((len(tokens), *self._route(tokens, create=False)))
        best = self._best(leaf, tokens) if leaf else None
        if best is not None:
            self._merge(best, tokens)
            return best, False
        shape = _shape(tokens)
        c = self._shapes.get(shape)
        if c is not None and c.alive:
            return c, False
        cid = template_id(tokens)
        if cid in self._clusters:  # a 64-bit collision with a live template
            n = 1
            while f"{cid}~{n}" in self._clusters:
                n += 1
            cid = f"{cid}~{n}"
        while len(self._clusters) >= self.config.max_templates:
            self._evict()
        c = _Cluster(cid, list(tokens), self._route(tokens, create=True))
        self._insert(c)
        self._add_shape(c, shape)
        return c, True

    def _route(self, tokens: list[str], create: bool) -> tuple[str, ...]:
        """The tree path under the token count: the leading tokens that are plain words, ``<*>``
        for the others and past ``max_children``; when searching, a word the node does not know
        leads to its ``<*>`` child if it has one."""
        path: tuple[Any, ...] = (len(tokens),)
        for tok in tokens[: self._prefix]:
            kids = self._children.get(path, ())
            if tok not in kids:
                if WILDCARD in tok or not self._plain(tok):
                    tok = WILDCARD
                elif not create:
                    if WILDCARD in kids:
                        tok = WILDCARD
                elif len(kids) >= self.config.max_children:
                    tok = WILDCARD
            path = (*path, tok)
        return path[1:]

    def _best(self, leaf: list[_Cluster], tokens: list[str]) -> _Cluster | None:
        """The template of the leaf that the line fits best, if any fits.

        A template covers a line when all its tokens other than ``<*>`` are equal to the line's;
        of several, the most general wins. Otherwise the similarity is the share of equal tokens
        among the positions where neither side holds a variable, at least ``sim_threshold``, and
        two different plain words at one position rule the template out.
        """
        th = self.config.sim_threshold
        plain = self._plain
        best, best_score = None, -1.0
        for c in leaf:
            same = mism = 0
            comparable = len(tokens)
            for t, x in zip(c.tokens, tokens):
                if t == x:
                    if WILDCARD in t:
                        comparable -= 1
                    else:
                        same += 1
                elif t == WILDCARD:
                    comparable -= 1
                else:
                    mism += 1
                    if WILDCARD in t or WILDCARD in x:
                        if _fits(t, x):  # an instance of a partly variable token
                            comparable -= 1
                    elif (i := t.find("=")) > 0 and t[: i + 1] == x[: i + 1]:
                        comparable -= 1  # another value of the same key
                    elif plain(t) and plain(x):
                        break
            else:
                if mism == 0:
                    score = 2.0 + c.wild / (len(tokens) + 1)
                elif comparable and same / comparable >= th:
                    score = same / comparable
                else:
                    continue
                if score > best_score:
                    best, best_score = c, score
        return best

    def _plain(self, token: str) -> bool:
        v = self._plain_cache.get(token)
        if v is None:
            if len(self._plain_cache) >= self.config.cache_size:
                self._plain_cache.clear()
            v = self._plain_cache[token] = _PLAIN(token) is not None
        return v

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
            self._add_shape(c, _shape(tpl))

    def _add_shape(self, c: _Cluster, shape: str) -> None:
        if len(c.shapes) < _MAX_SHAPES and shape not in self._shapes:
            self._shapes[shape] = c
            c.shapes.append(shape)

    def _insert(self, c: _Cluster) -> None:
        path: tuple[Any, ...] = (len(c.tokens),)
        for tok in c.route:
            self._children.setdefault(path, set()).add(tok)
            path = (*path, tok)
        self._leaves.setdefault(path, []).append(c)
        self._clusters[c.id] = c

    def _evict(self) -> None:
        """Forget the least recently matched template and the tree nodes only it used."""
        _, c = self._clusters.popitem(last=False)
        c.alive = False
        for shape in c.shapes:
            if self._shapes.get(shape) is c:
                del self._shapes[shape]
        path = (len(c.tokens), *c.route)
        leaf = self._leaves[path]
        leaf.remove(c)
        if leaf:
            return
        del self._leaves[path]
        while len(path) > 1:
            parent, tok = path[:-1], path[-1]
            kids = self._children.get(parent)
            if kids is None:
                break
            kids.discard(tok)
            if kids:
                break
            del self._children[parent]
            path = parent


@functools.lru_cache(maxsize=4096)
def _glob(token: str) -> Callable[[str], re.Match[str] | None]:
    """A partly variable token as a pattern: ``<*>`` stands for any text."""
    return re.compile(".*?".join(re.escape(part) for part in token.split(WILDCARD)), re.DOTALL).fullmatch


def _fits(t: str, x: str) -> bool:
    """Whether one of two different tokens is an instance of the other read as a pattern
    ("rhost=<*>" and "rhost=example.org"; not "num=<*>,flags=<*>" and "topActivity=Foo")."""
    return (WILDCARD in t and _glob(t)(x) is not None) or (WILDCARD in x and _glob(x)(t) is not None)


def _shape(tokens: Sequence[str]) -> str:
    """The token sequence with each run of variable-only tokens as one ``<*>``: lines of one
    template whose variables span a varying number of tokens ("850 bytes" / "1190 bytes
    (1.16 KB)", "<1 sec" / "00:02") agree here."""
    out: list[str] = []
    for t in tokens:
        if WILDCARD in t and _VARIABLE_ONLY(t):
            if out and out[-1] == WILDCARD:
                continue
            t = WILDCARD
        out.append(t)
    return " ".join(out)


def _compile_masks(
    masks: tuple[MaskRule, ...],
) -> tuple[Callable[[str], str], Callable[[str], Iterator[re.Match[str]]] | None]:
    """A callable applying every rule in order (consecutive rules with one placeholder run as one
    regex) and, when that makes a single regex, a ``finditer`` that also yields, as group
    ``_KEPT``, every digit no rule covered."""
    if not masks:
        return (lambda s: s), re.compile(f"(?P<{_KEPT}>\\d)").finditer
    steps: list[tuple[str, str]] = []
    for m in masks:
        if steps and steps[-1][1] == m.placeholder:
            steps[-1] = (f"{steps[-1][0]}|(?:{m.pattern})", m.placeholder)
        else:
            steps.append((f"(?:{m.pattern})", m.placeholder))
    compiled = [(re.compile(p), ph.replace("\\", "\\\\")) for p, ph in steps]
    if len(compiled) == 1:
        rx, repl = compiled[0]
        kept = re.compile(f"{rx.pattern}|(?P<{_KEPT}>\\d)").finditer
        return functools.partial(rx.sub, repl), kept

    def apply(s: str) -> str:
        for rx, repl in compiled:
            s = rx.sub(repl, s)
        return s

    return apply, None
