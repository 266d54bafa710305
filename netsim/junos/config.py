"""A Junos configuration held as a tree of tokens, with the few schema facts needed to read and write it.

The emulator keeps one canonical form, the set of `set` statements, so that configurations loaded as set
statements, curly text or XML compare equal. A full Junos schema is far beyond an emulator; instead a small table
says which keywords take a value (leaves), which name list entries (lists), and which are containers. Unknown
keywords are treated as containers, which keeps round trips consistent even for configuration we do not model.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass

from lxml import etree

Tree = dict[str, "Tree"]

LEAF = "leaf"
LEAF_LIST = "leaf-list"
LIST = "list"
CONTAINER = "container"

SINGLE_LEAVES = frozenset({
    "host-name", "domain-name", "description", "instance-type", "rate-limit", "routing-instance", "mark",
    "peer-as", "local-as", "type", "vrf-target", "route-distinguisher", "mtu", "router-id", "autonomous-system",
    "local-address", "local-preference", "metric", "preference", "hold-time", "default-action", "sample",
})
MULTI_LEAVES = frozenset({
    "next-hop", "protocol", "destination-port", "source-port", "port", "packet-length", "icmp-type", "icmp-code",
    "fragment", "tcp-flags", "members", "dscp", "import", "export", "apply-groups", "add", "as-path-prepend",
})
LIST_KEYWORDS = frozenset({
    "route", "policy-statement", "term", "group", "neighbor", "unit", "address", "routing-instances",
    "interfaces", "prefix-list", "filter", "user", "interface", "prefix-list-item", "groups",
})
# Lists whose entries Junos XML wraps in an element of another name: <routing-instances><instance><name>.
WRAPPED_LISTS = {"routing-instances": "instance", "interfaces": "interface"}
# Leaves whose value Junos XML puts in a child element: <vrf-target><community>target:1:1</community>.
IMPLICIT_VALUE = {"vrf-target": "community", "route-distinguisher": "rd-type"}
# Keywords whose meaning depends on the parent: `match destination` is a prefix, `policy-options community` a list.
CONTEXT_KINDS = {
    ("match", "destination"): LEAF,
    ("match", "source"): LEAF,
    ("then", "community"): LEAF_LIST,
    ("route", "community"): LEAF_LIST,
    ("policy-options", "community"): LIST,
    ("then", "next-hop"): LEAF,
    ("from", "community"): LEAF_LIST,
    ("from", "protocol"): LEAF_LIST,
    ("from", "route-filter"): LEAF_LIST,
}
TOP_LEVEL = frozenset({
    "system", "interfaces", "routing-options", "routing-instances", "policy-options", "protocols", "firewall",
    "groups", "apply-groups", "snmp", "chassis", "services", "security", "forwarding-options", "class-of-service",
    "version", "event-options", "vlans", "bridge-domains",
})
PREFIX_LEAVES = frozenset({"destination", "source"})


class ConfigSyntaxError(ValueError):
    """A statement Junos would refuse at load time; `bad_element` is the token Junos would name."""

    def __init__(self, message: str, bad_element: str = "", path: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.bad_element = bad_element
        self.path = path


@dataclass(frozen=True)
class Statement:
    """One configuration operation: `set`, `delete` or `replace` (delete then set) of a token path."""

    op: str
    tokens: tuple[str, ...]


def classify(parent: str | None, keyword: str) -> str:
    """The kind of `keyword` appearing under `parent`: leaf, leaf-list, list or container."""
    if parent is not None and (parent, keyword) in CONTEXT_KINDS:
        return CONTEXT_KINDS[(parent, keyword)]
    if keyword in SINGLE_LEAVES:
        return LEAF
    if keyword in MULTI_LEAVES:
        return LEAF_LIST
    if keyword in LIST_KEYWORDS:
        return LIST
    return CONTAINER


_TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"|(\[|\]|\{|\}|;)|([^\s"\[\]{};]+)')


def tokenize(text: str) -> list[str]:
    """Split a line of Junos syntax into tokens; quoted strings lose their quotes, brackets stay tokens."""
    tokens: list[str] = []
    for quoted, punct, word in _TOKEN.findall(text):
        if punct:
            tokens.append(punct)
        elif word:
            tokens.append(word)
        else:
            tokens.append(quoted.replace('\\"', '"'))
    return tokens


def quote(value: str) -> str:
    """Quote a value the way Junos shows it: only when it holds spaces or syntax characters."""
    if value == "" or re.search(r'[\s;{}\[\]"#]', value):
        return '"' + value.replace('"', '\\"') + '"'
    return value


def expand_brackets(tokens: list[str]) -> list[list[str]]:
    """Turn `protocol [ tcp udp ]` into one token list per value, as Junos does for leaf lists."""
    if "[" not in tokens:
        return [tokens]
    start = tokens.index("[")
    end = tokens.index("]", start) if "]" in tokens[start:] else -1
    if end < 0 or end != len(tokens) - 1:
        raise ConfigSyntaxError("syntax error", bad_element="[")
    return [[*tokens[:start], value] for value in tokens[start + 1:end]]


def _check_value(keyword: str, value: str, path: tuple[str, ...]) -> None:
    """The few value checks that matter to Sluice: flow route prefixes and numeric ranges must parse."""
    if keyword in PREFIX_LEAVES and "flow" in path:
        try:
            ipaddress.ip_network(value, strict=True)
        except ValueError as error:
            raise ConfigSyntaxError(f"invalid prefix: {value}", bad_element=value, path=path) from error
    if keyword in {"packet-length", "destination-port", "source-port", "port"} and "flow" in path:
        if not re.fullmatch(r"\d+(-\d+)?|[a-z][a-z0-9-]*", value):
            raise ConfigSyntaxError(f"invalid value: {value}", bad_element=value, path=path)
        numbers = [int(part) for part in value.split("-") if part.isdigit()]
        if numbers and max(numbers) > 65535:
            raise ConfigSyntaxError(f"value out of range: {value}", bad_element=value, path=path)


class ConfigTree:
    """A Junos configuration. Nodes are dicts keyed by token; a leaf's values are childless entries."""

    def __init__(self, root: Tree | None = None) -> None:
        self.root: Tree = root if root is not None else {}

    def copy(self) -> ConfigTree:
        return ConfigTree(copy.deepcopy(self.root))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConfigTree) and self.root == other.root

    def __hash__(self) -> int:
        return hash(tuple(self.set_statements()))

    def apply(self, statement: Statement) -> None:
        if statement.op == "set":
            self.set(statement.tokens)
        elif statement.op == "delete":
            self.delete(statement.tokens)
        elif statement.op == "replace":
            self.delete(statement.tokens)
            self.set(statement.tokens)
        else:
            raise ConfigSyntaxError(f"unsupported operation {statement.op}", bad_element=statement.op)

    def set(self, tokens: tuple[str, ...]) -> None:
        """Add a statement; a single-valued leaf loses its old value, as `set` does on Junos."""
        if not tokens:
            raise ConfigSyntaxError("syntax error, expecting <statement>", bad_element="set")
        if tokens[0] not in TOP_LEVEL:
            raise ConfigSyntaxError("syntax error", bad_element=tokens[0])
        node, parent, index = self.root, None, 0
        while index < len(tokens):
            keyword = tokens[index]
            kind = classify(parent, keyword)
            if kind in (LEAF, LEAF_LIST):
                if index + 1 >= len(tokens):
                    node.setdefault(keyword, {})
                    return
                if index + 2 < len(tokens):
                    raise ConfigSyntaxError("syntax error", bad_element=tokens[index + 2], path=tokens[:index])
                value = tokens[index + 1]
                _check_value(keyword, value, tokens[:index])
                values = node.setdefault(keyword, {})
                if kind == LEAF:
                    values.clear()
                values[value] = {}
                return
            node = node.setdefault(keyword, {})
            if kind == LIST:
                if index + 1 >= len(tokens):
                    return
                node = node.setdefault(tokens[index + 1], {})
                index += 2
            else:
                index += 1
            parent = keyword

    def delete(self, tokens: tuple[str, ...]) -> None:
        """Remove a statement and everything under it; containers left empty disappear, as on Junos."""
        trail: list[tuple[Tree, str]] = []
        node = self.root
        for token in tokens:
            if token not in node:
                return
            trail.append((node, token))
            node = node[token]
        if not trail:
            self.root.clear()
            return
        parent, key = trail.pop()
        del parent[key]
        while trail:
            parent, key = trail.pop()
            if parent[key]:
                break
            del parent[key]

    def subtree(self, paths: list[tuple[str, ...]]) -> ConfigTree:
        """The parts of the configuration under the given paths, with their ancestors: a get filter."""
        result: Tree = {}
        for path in paths:
            node = self.root
            found = True
            for token in path:
                if token not in node:
                    found = False
                    break
                node = node[token]
            if not found:
                continue
            target = result
            for token in path[:-1]:
                target = target.setdefault(token, {})
            if path:
                target[path[-1]] = copy.deepcopy(node)
            else:
                result = copy.deepcopy(node)
        return ConfigTree(result)

    def set_statements(self) -> list[str]:
        """The canonical form: sorted `set` statements, values quoted as Junos shows them."""
        return sorted(" ".join(["set", *map(quote, path)]) for path in self.paths())

    def paths(self) -> Iterator[tuple[str, ...]]:
        yield from _paths(self.root, (), None)

    def text(self) -> str:
        return "".join(_text_lines(self.root, None, 0))

    def xml(self) -> etree._Element:
        element = etree.Element("configuration")
        _xml_fill(element, self.root, None)
        return element


def _paths(node: Tree, prefix: tuple[str, ...], parent: str | None) -> Iterator[tuple[str, ...]]:
    for keyword in sorted(node):
        child = node[keyword]
        kind = classify(parent, keyword)
        if kind in (LEAF, LEAF_LIST):
            if not child:
                yield (*prefix, keyword)
            for value in sorted(child):
                yield (*prefix, keyword, value)
        elif kind == LIST:
            if not child:
                yield (*prefix, keyword)
            for name in sorted(child):
                if child[name]:
                    yield from _paths(child[name], (*prefix, keyword, name), keyword)
                else:
                    yield (*prefix, keyword, name)
        elif child:
            yield from _paths(child, (*prefix, keyword), keyword)
        else:
            yield (*prefix, keyword)


def _block(head: str, node: Tree, parent: str, depth: int) -> list[str]:
    pad = "    " * depth
    if not node:
        return [f"{pad}{head};\n"]
    return [f"{pad}{head} {{\n", *_text_lines(node, parent, depth + 1), f"{pad}}}\n"]


def _text_lines(node: Tree, parent: str | None, depth: int) -> list[str]:
    """Curly-brace text as `show configuration` prints it, four spaces a level."""
    lines: list[str] = []
    pad = "    " * depth
    for keyword in sorted(node):
        lines.extend(_entry_lines(keyword, node[keyword], parent, depth, pad))
    return lines


def _entry_lines(keyword: str, child: Tree, parent: str | None, depth: int, pad: str) -> list[str]:
    kind = classify(parent, keyword)
    if kind in (LEAF, LEAF_LIST):
        values = [quote(value) for value in sorted(child)]
        if not values:
            return [f"{pad}{keyword};\n"]
        if len(values) == 1:
            return [f"{pad}{keyword} {values[0]};\n"]
        return [f"{pad}{keyword} [ {' '.join(values)} ];\n"]
    if kind == LIST:
        lines: list[str] = []
        for name in sorted(child):
            lines.extend(_block(f"{keyword} {quote(name)}", child[name], keyword, depth))
        return lines or [f"{pad}{keyword};\n"]
    return _block(keyword, child, keyword, depth)


def _xml_fill(element: etree._Element, node: Tree, parent: str | None) -> None:
    for keyword in sorted(node):
        child = node[keyword]
        kind = classify(parent, keyword)
        if kind in (LEAF, LEAF_LIST):
            if not child:
                etree.SubElement(element, keyword)
            for value in sorted(child):
                leaf = etree.SubElement(element, keyword)
                if keyword in IMPLICIT_VALUE:
                    etree.SubElement(leaf, IMPLICIT_VALUE[keyword]).text = value
                else:
                    leaf.text = value
        elif kind == LIST:
            holder = etree.SubElement(element, keyword) if keyword in WRAPPED_LISTS else element
            for name in sorted(child):
                entry = etree.SubElement(holder, WRAPPED_LISTS.get(keyword, keyword))
                etree.SubElement(entry, "name").text = name
                _xml_fill(entry, child[name], keyword)
        else:
            _xml_fill(etree.SubElement(element, keyword), child, keyword)


def _local(tag: object) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def _xml_op(element: etree._Element) -> str:
    for name, value in element.attrib.items():
        local = etree.QName(name).localname
        if (local == "delete" and value == "delete") or (local == "operation" and value in ("delete", "remove")):
            return "delete"
        if (local == "replace" and value == "replace") or (local == "operation" and value == "replace"):
            return "replace"
    return "set"


def statements_from_xml(configuration: etree._Element) -> list[Statement]:
    """Statements from a <configuration> element, honouring delete="delete" and replace="replace"."""
    out: list[Statement] = []
    _xml_walk(configuration, (), None, out)
    return out


def _xml_walk(
    element: etree._Element, prefix: tuple[str, ...], parent: str | None, out: list[Statement], *,
    skip_name: bool = False,
) -> None:
    for child in element:
        tag = _local(child.tag)
        if not tag or (skip_name and tag == "name"):
            continue
        op = _xml_op(child)
        kind = classify(parent, tag)
        if kind == LIST:
            entries = [(entry, _xml_op(entry)) for entry in child] if tag in WRAPPED_LISTS else [(child, op)]
            if tag in WRAPPED_LISTS and not len(child):
                out.append(Statement(op, (*prefix, tag)))
            for entry, entry_op in entries:
                if tag in WRAPPED_LISTS and op != "set":
                    entry_op = op
                _xml_entry(entry, tag, prefix, entry_op, out)
        elif kind in (LEAF, LEAF_LIST):
            value = child.findtext(IMPLICIT_VALUE[tag]) if tag in IMPLICIT_VALUE else child.text
            value = (value or "").strip()
            tokens = (*prefix, tag, value) if value else (*prefix, tag)
            out.append(Statement(op, tokens))
        elif len(child):
            if op == "set":
                _xml_walk(child, (*prefix, tag), tag, out)
            else:
                out.append(Statement("delete", (*prefix, tag)))
                if op == "replace":
                    _xml_walk(child, (*prefix, tag), tag, out)
        else:
            text = (child.text or "").strip()
            out.append(Statement(op, (*prefix, tag, text) if text else (*prefix, tag)))


def _xml_entry(entry: etree._Element, keyword: str, prefix: tuple[str, ...], op: str, out: list[Statement]) -> None:
    name = next(((node.text or "").strip() for node in entry if _local(node.tag) == "name"), "")
    if not name:
        out.append(Statement(op, (*prefix, keyword)))
        return
    tokens = (*prefix, keyword, name)
    if op in ("delete", "replace"):
        out.append(Statement("delete", tokens))
        if op == "delete":
            return
    before = len(out)
    _xml_walk(entry, tokens, keyword, out, skip_name=True)
    if len(out) == before:
        out.append(Statement("set", tokens))


def statements_from_set(text: str) -> list[Statement]:
    """Statements from `set`/`delete` lines as loaded with action="set"."""
    out: list[Statement] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tokens = tokenize(line)
        verb, rest = tokens[0], tokens[1:]
        if verb not in ("set", "delete"):
            raise ConfigSyntaxError("syntax error", bad_element=verb)
        if verb == "set" and not rest:
            raise ConfigSyntaxError("syntax error, expecting <statement>", bad_element="set")
        for expanded in expand_brackets(rest):
            out.append(Statement(verb, tuple(expanded)))
    return out


def statements_from_text(text: str) -> list[Statement]:
    """Statements from curly-brace text, honouring `replace:` and `delete:` tags."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = "\n".join(line for line in text.splitlines() if not line.strip().startswith("#"))
    tokens = tokenize(text)
    out: list[Statement] = []
    stack: list[tuple[tuple[str, ...], int, bool]] = []
    path: tuple[str, ...] = ()
    current: list[str] = []
    tag = "set"
    skipping = False
    for token in tokens:
        if token in ("replace:", "delete:") and not current:
            tag = token[:-1]
        elif token == "{":
            if not current:
                raise ConfigSyntaxError("syntax error", bad_element="{")
            path = (*path, *current)
            if tag != "set" and not skipping:
                out.append(Statement("delete", path))
            stack.append((tuple(current), len(out), skipping))
            skipping = skipping or tag == "delete"
            current, tag = [], "set"
        elif token == "}":
            if current or not stack:
                raise ConfigSyntaxError("syntax error", bad_element="}")
            block, mark, skipping_before = stack.pop()
            if len(out) == mark and not skipping:
                out.append(Statement("set", path))
            skipping = skipping_before
            path = path[: len(path) - len(block)]
        elif token == ";":
            if current and not skipping:
                for expanded in expand_brackets(current):
                    out.append(Statement(tag, (*path, *expanded)))
            current, tag = [], "set"
        else:
            current.append(token)
    if current or stack:
        raise ConfigSyntaxError("syntax error, unexpected end of configuration", bad_element=" ".join(current))
    return out


def diff(old: ConfigTree, new: ConfigTree) -> str:
    """A `show | compare` style diff: one `[edit ...]` header per changed level, +/- lines below it."""
    sections: dict[tuple[str, ...], list[str]] = {}
    _diff(old.root, new.root, (), None, sections)
    lines: list[str] = []
    for path, body in sections.items():
        lines.append("[edit" + "".join(" " + quote(token) for token in path) + "]\n")
        lines.extend(body)
    return "".join(lines)


def _signed(sign: str, rendered: list[str]) -> list[str]:
    return [sign + line for line in rendered]


def _diff(old: Tree, new: Tree, path: tuple[str, ...], parent: str | None,
          sections: dict[tuple[str, ...], list[str]]) -> None:
    for keyword in sorted(set(old) | set(new)):
        kind = classify(parent, keyword)
        before, after = old.get(keyword), new.get(keyword)
        if before == after:
            continue
        if before is None or after is None:
            sign = "-" if after is None else "+"
            body = before if after is None else after
            assert body is not None, "one side differs from None here"
            sections.setdefault(path, []).extend(_signed(sign, _entry_lines(keyword, body, parent, 1, "    ")))
            continue
        if kind in (LEAF, LEAF_LIST):
            for sign, side, other in (("-", before, after), ("+", after, before)):
                for value in sorted(set(side) - set(other)):
                    sections.setdefault(path, []).append(f"{sign}    {keyword} {quote(value)};\n")
        elif kind == LIST:
            for name in sorted(set(before) | set(after)):
                if name not in after:
                    rendered = _block(f"{keyword} {quote(name)}", before[name], keyword, 1)
                    sections.setdefault(path, []).extend(_signed("-", rendered))
                elif name not in before:
                    rendered = _block(f"{keyword} {quote(name)}", after[name], keyword, 1)
                    sections.setdefault(path, []).extend(_signed("+", rendered))
                elif before[name] != after[name]:
                    _diff(before[name], after[name], (*path, keyword, name), keyword, sections)
        else:
            _diff(before, after, (*path, keyword), keyword, sections)


def tree_from_statements(statements: list[Statement]) -> ConfigTree:
    tree = ConfigTree()
    for statement in statements:
        tree.apply(statement)
    return tree
