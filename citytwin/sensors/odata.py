"""Parsers for the SensorThings/OData query options: ``$filter``, ``$orderby``, ``$expand``, ``$select``.

The ``$filter`` parser builds a small AST (tuples) that :mod:`citytwin.sensors.service` compiles
to SQL where it can; geospatial functions and a few others are evaluated in Python with shapely
on the SQL-pre-filtered rows (:func:`evaluate`).

Examples
--------
>>> parse_filter("result gt 3 and not (name eq 'a''b')")[0]
'and'
>>> parse_expand("Datastreams($top=1;$orderby=id desc;$expand=Sensor),Locations")[0]['name']
'Datastreams'
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import shapely
import shapely.wkt
from shapely.geometry import shape


class QueryError(ValueError):
    """A query option cannot be parsed or evaluated; the message names the option."""


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<geo>(?:geography|geometry)'(?P<wkt>[^']*)')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)
  | (?P<date>\d{4}-\d{2}-\d{2}(?![\d:T]))
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<string>'(?:[^']|'')*')
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<ident>[A-Za-z_@][A-Za-z0-9_.@]*(?:/[A-Za-z_@$][A-Za-z0-9_.@]*)*)
    """,
    re.VERBOSE,
)

COMPARISONS = {"eq", "ne", "gt", "ge", "lt", "le"}
ARITH_ADD = {"add", "sub"}
ARITH_MUL = {"mul", "div", "mod"}

STRING_FUNCS = {
    "substringof": 2, "startswith": 2, "endswith": 2, "contains": 2, "length": 1, "tolower": 1,
    "toupper": 1, "trim": 1, "concat": 2, "indexof": 2, "substring": (2, 3),
}
DATE_FUNCS = {
    "year": 1, "month": 1, "day": 1, "hour": 1, "minute": 1, "second": 1, "fractionalseconds": 1,
    "date": 1, "time": 1, "totaloffsetminutes": 1, "now": 0, "mindatetime": 0, "maxdatetime": 0,
}
MATH_FUNCS = {"round": 1, "floor": 1, "ceiling": 1}
GEO_FUNCS = {
    "geo.distance": 2, "geo.length": 1, "geo.intersects": 2, "st_equals": 2, "st_disjoint": 2,
    "st_touches": 2, "st_within": 2, "st_overlaps": 2, "st_crosses": 2, "st_intersects": 2,
    "st_contains": 2, "st_relate": 3, "st_distance": 2,
}
FUNCTIONS = {**STRING_FUNCS, **DATE_FUNCS, **MATH_FUNCS, **GEO_FUNCS}


def parse_datetime(text: str) -> datetime:
    """An ISO 8601 instant; a missing offset means UTC."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise QueryError(f"not an ISO 8601 time: {text!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def _tokenize(text: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise QueryError(f"$filter: unexpected character {text[pos]!r} at position {pos}")
        pos = m.end()
        kind = m.lastgroup
        if kind == "ws":
            continue
        if kind == "wkt":
            kind = "geo"
        raw = m.group(0)
        if kind == "geo":
            try:
                tokens.append(("geo", shapely.wkt.loads(m.group("wkt"))))
            except shapely.errors.ShapelyError as exc:
                raise QueryError(f"$filter: invalid WKT literal {m.group('wkt')!r}: {exc}") from None
        elif kind == "datetime":
            tokens.append(("lit", parse_datetime(raw)))
        elif kind == "date":
            tokens.append(("lit", parse_datetime(raw + "T00:00:00Z")))
        elif kind == "number":
            tokens.append(("lit", float(raw) if any(c in raw for c in ".eE") else int(raw)))
        elif kind == "string":
            tokens.append(("lit", raw[1:-1].replace("''", "'")))
        else:
            tokens.append((kind, raw))
    return tokens


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    def peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, Any]:
        tok = self.peek()
        if tok is None:
            raise QueryError("$filter: unexpected end of expression")
        self.i += 1
        return tok

    def expect(self, kind: str) -> None:
        tok = self.take()
        if tok[0] != kind:
            raise QueryError(f"$filter: expected {kind}, found {tok[1]!r}")

    def keyword(self, words: set[str]) -> str | None:
        tok = self.peek()
        if tok and tok[0] == "ident" and tok[1] in words:
            self.i += 1
            return tok[1]
        return None

    def parse(self):
        if not self.tokens:
            raise QueryError("$filter: empty expression")
        node = self.or_expr()
        if self.peek() is not None:
            raise QueryError(f"$filter: unexpected {self.peek()[1]!r}")
        return node

    def or_expr(self):
        node = self.and_expr()
        while self.keyword({"or"}):
            node = ("or", node, self.and_expr())
        return node

    def and_expr(self):
        node = self.not_expr()
        while self.keyword({"and"}):
            node = ("and", node, self.not_expr())
        return node

    def not_expr(self):
        if self.keyword({"not"}):
            return ("not", self.not_expr())
        return self.cmp_expr()

    def cmp_expr(self):
        node = self.add_expr()
        op = self.keyword(COMPARISONS)
        if op:
            node = ("cmp", op, node, self.add_expr())
        return node

    def add_expr(self):
        node = self.mul_expr()
        while op := self.keyword(ARITH_ADD):
            node = ("arith", op, node, self.mul_expr())
        return node

    def mul_expr(self):
        node = self.unary()
        while op := self.keyword(ARITH_MUL):
            node = ("arith", op, node, self.unary())
        return node

    def unary(self):
        tok = self.peek()
        if tok and tok[0] == "ident" and tok[1] == "-":
            self.take()
            return ("neg", self.unary())
        return self.primary()

    def primary(self):
        kind, value = self.take()
        if kind == "lparen":
            node = self.or_expr()
            self.expect("rparen")
            return node
        if kind == "lit":
            return ("lit", value)
        if kind == "geo":
            return ("geo", value)
        if kind == "ident":
            if value in ("true", "false"):
                return ("lit", value == "true")
            if value == "null":
                return ("lit", None)
            nxt = self.peek()
            if nxt and nxt[0] == "lparen":
                name = value.lower()
                if name not in FUNCTIONS:
                    raise QueryError(f"$filter: unknown function {value!r}")
                self.take()
                args = []
                if self.peek() and self.peek()[0] != "rparen":
                    args.append(self.or_expr())
                    while self.peek() and self.peek()[0] == "comma":
                        self.take()
                        args.append(self.or_expr())
                self.expect("rparen")
                arity = FUNCTIONS[name]
                ok = len(args) in arity if isinstance(arity, tuple) else len(args) == arity
                if not ok:
                    raise QueryError(f"$filter: {name}() takes {arity} argument(s), got {len(args)}")
                return ("fn", name, args)
            if value in COMPARISONS | ARITH_ADD | ARITH_MUL | {"and", "or", "not"}:
                raise QueryError(f"$filter: operator {value!r} is missing an operand")
            return ("path", value.split("/"))
        raise QueryError(f"$filter: unexpected {value!r}")


def parse_filter(text: str):
    """Parse a ``$filter`` expression into an AST of tuples; raise QueryError."""
    return _Parser(text).parse()


def contains_python_only(node) -> bool:
    """True when the expression needs Python evaluation (geospatial and a few others)."""
    if not isinstance(node, tuple):
        return False
    if node[0] == "geo":
        return True
    if node[0] == "fn" and (
        node[1] in GEO_FUNCS
        or node[1] in MATH_FUNCS
        or node[1] in {"date", "time", "fractionalseconds", "totaloffsetminutes"}
    ):
        return True
    return any(contains_python_only(c) for c in node[1:] if isinstance(c, tuple)) or any(
        contains_python_only(a) for c in node[1:] if isinstance(c, list) for a in c
    )


def conjuncts(node) -> list:
    """Split an expression at its top-level ``and``s."""
    if node[0] == "and":
        return conjuncts(node[1]) + conjuncts(node[2])
    return [node]


# ---------------------------------------------------------------- Python evaluation


def _geometry(value):
    if value is None:
        return None
    if isinstance(value, shapely.Geometry):
        return value
    if isinstance(value, dict):
        if value.get("type") == "Feature":
            value = value.get("geometry")
        try:
            return shape(value)
        except (AttributeError, KeyError, TypeError, ValueError, shapely.errors.ShapelyError):
            raise QueryError(f"$filter: not a GeoJSON geometry: {value!r}") from None
    if isinstance(value, str):
        return shapely.wkt.loads(value)
    raise QueryError(f"$filter: not a geometry: {value!r}")


def _cmp(op: str, a, b) -> bool:
    if a is None or b is None:
        return {"eq": a is b or a == b, "ne": not (a is b or a == b)}.get(op, False)
    if isinstance(a, datetime) and isinstance(b, str):
        b = parse_datetime(b)
    if isinstance(b, datetime) and isinstance(a, str):
        a = parse_datetime(a)
    try:
        return {
            "eq": a == b, "ne": a != b, "gt": a > b, "ge": a >= b, "lt": a < b, "le": a <= b,
        }[op]
    except TypeError:
        return False


def evaluate(node, entity: dict, *, resolve=None):
    """Evaluate an AST on an entity's JSON form; ``resolve(entity, relation)`` follows to-one links."""
    kind = node[0]
    if kind == "lit" or kind == "geo":
        return node[1]
    if kind == "path":
        value: Any = entity
        for seg in node[1]:
            if value is None:
                return None
            if seg in ("id", "@iot.id"):
                seg = "@iot.id"
            if isinstance(value, dict) and seg in value:
                value = value[seg]
            elif isinstance(value, dict) and resolve is not None and seg[:1].isupper():
                value = resolve(value, seg)
            else:
                return None
        if isinstance(value, str) and re.match(r"^\d{4}-\d{2}-\d{2}T", value) and "/" not in value:
            try:
                return parse_datetime(value)
            except QueryError:
                return value
        return value
    if kind == "and":
        return bool(evaluate(node[1], entity, resolve=resolve)) and bool(evaluate(node[2], entity, resolve=resolve))
    if kind == "or":
        return bool(evaluate(node[1], entity, resolve=resolve)) or bool(evaluate(node[2], entity, resolve=resolve))
    if kind == "not":
        return not evaluate(node[1], entity, resolve=resolve)
    if kind == "neg":
        v = evaluate(node[1], entity, resolve=resolve)
        return None if v is None else -v
    if kind == "cmp":
        return _cmp(node[1], evaluate(node[2], entity, resolve=resolve), evaluate(node[3], entity, resolve=resolve))
    if kind == "arith":
        a, b = evaluate(node[2], entity, resolve=resolve), evaluate(node[3], entity, resolve=resolve)
        if a is None or b is None:
            return None
        try:
            return {"add": lambda: a + b, "sub": lambda: a - b, "mul": lambda: a * b,
                    "div": lambda: a / b, "mod": lambda: a % b}[node[1]]()
        except (TypeError, ZeroDivisionError):
            return None
    if kind == "fn":
        return _call(node[1], [evaluate(a, entity, resolve=resolve) for a in node[2]])
    raise QueryError(f"$filter: cannot evaluate {kind}")


def _call(name: str, args: list):
    if name == "now":
        return datetime.now(UTC)
    if name == "mindatetime":
        return datetime(1, 1, 1, tzinfo=UTC)
    if name == "maxdatetime":
        return datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    if any(a is None for a in args):
        return None
    if name in GEO_FUNCS:
        if name == "geo.length":
            return _geometry(args[0]).length
        a, b = _geometry(args[0]), _geometry(args[1])
        if name in ("geo.distance", "st_distance"):
            return a.distance(b)
        if name == "st_relate":
            return a.relate_pattern(b, str(args[2]))
        method = {"geo.intersects": "intersects", "st_equals": "equals"}.get(name, name[3:])
        return bool(getattr(a, method)(b))
    if name in DATE_FUNCS:
        t = args[0] if isinstance(args[0], datetime) else parse_datetime(str(args[0]))
        if name == "date":
            return t.date().isoformat()
        if name == "time":
            return t.time().isoformat()
        if name == "fractionalseconds":
            return t.microsecond / 1e6
        if name == "totaloffsetminutes":
            off = t.utcoffset() or timedelta(0)
            return int(off.total_seconds() // 60)
        return getattr(t, name)
    if name in MATH_FUNCS:
        return {"round": lambda x: math.floor(x + 0.5), "floor": math.floor, "ceiling": math.ceil}[name](args[0])
    s = args[0]
    if name == "substringof":
        return str(args[0]) in str(args[1])
    if name == "startswith":
        return str(s).startswith(str(args[1]))
    if name == "endswith":
        return str(s).endswith(str(args[1]))
    if name == "contains":
        return str(args[1]) in str(s)
    if name == "length":
        return len(str(s))
    if name == "tolower":
        return str(s).lower()
    if name == "toupper":
        return str(s).upper()
    if name == "trim":
        return str(s).strip()
    if name == "concat":
        return str(s) + str(args[1])
    if name == "indexof":
        return str(s).find(str(args[1]))
    if name == "substring":
        start = int(args[1])
        return str(s)[start:] if len(args) == 2 else str(s)[start : start + int(args[2])]
    raise QueryError(f"$filter: unknown function {name}")


# ---------------------------------------------------------------- $orderby, $select, $expand


def split_top_level(text: str, sep: str) -> list[str]:
    """Split at ``sep`` outside parentheses and quotes."""
    parts, depth, quote, cur = [], 0, False, []
    for ch in text:
        if ch == "'":
            quote = not quote
        elif not quote and ch == "(":
            depth += 1
        elif not quote and ch == ")":
            depth -= 1
            if depth < 0:
                raise QueryError(f"unbalanced parentheses in {text!r}")
        if ch == sep and depth == 0 and not quote:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise QueryError(f"unbalanced parentheses in {text!r}")
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def parse_orderby(text: str) -> list[tuple[Any, bool]]:
    """``a desc, b`` → [(ast, descending), ...]; each item may be any filter expression."""
    out = []
    for part in split_top_level(text, ","):
        desc = False
        m = re.match(r"^(.*?)\s+(asc|desc)$", part, re.IGNORECASE)
        if m:
            part, desc = m.group(1), m.group(2).lower() == "desc"
        out.append((_Parser(part).parse(), desc))
    return out


def parse_select(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def parse_options(text: str) -> dict[str, str]:
    """``$top=1;$orderby=id`` → {"$top": "1", "$orderby": "id"} (options inside ``$expand``)."""
    opts = {}
    for part in split_top_level(text, ";"):
        if "=" not in part:
            raise QueryError(f"$expand: option {part!r} lacks '='")
        k, v = part.split("=", 1)
        opts[k.strip()] = v.strip()
    return opts


def parse_expand(text: str) -> list[dict]:
    """``Datastreams($top=1)/Sensor,Locations`` → [{"name", "options", "expand"}, ...]."""
    items: list[dict] = []
    for part in split_top_level(text, ","):
        segs = split_top_level(part, "/")
        node: dict | None = None
        root: dict | None = None
        for seg in segs:
            m = re.match(r"^([A-Za-z]+)(?:\((.*)\))?$", seg, re.DOTALL)
            if not m:
                raise QueryError(f"$expand: cannot parse {seg!r}")
            item = {"name": m.group(1), "options": parse_options(m.group(2)) if m.group(2) else {}, "expand": []}
            if node is None:
                root = item
            else:
                node["expand"].append(item)
            node = item
        assert root is not None
        # merge repeated roots (Datastreams/Sensor,Datastreams/ObservedProperty)
        same = next((i for i in items if i["name"] == root["name"] and not i["options"] and not root["options"]), None)
        if same is not None:
            same["expand"].extend(root["expand"])
        else:
            items.append(root)
    return items
