"""Reading an input file, the one way every command does it.

- Regular files only. A FIFO, a device (/dev/zero), a socket or a directory where a file is
  expected is refused at once with one line: the path is looked at with os.stat before it is
  opened (opening a FIFO blocks until a writer comes), and the file is opened non-blocking and
  looked at again, so nothing swapped in between can hang the command either.
- What must fit in memory (a search space, a plan, an LR-finder report) is read up to a bound
  (MAX_BYTES); a larger file is refused with its size.
- Text is UTF-8, with or without a byte-order mark; UTF-16 and UTF-32 (with a BOM, or UTF-16
  without one, as Excel's "Unicode text" writes it) are decoded too.
- JSON nested deeper than Python can parse, or holding an integer of thousands of digits, is
  refused with one line.
- YAML is composed first and judged before anything is built from it: aliases expanded beyond
  MAX_YAML_NODES nodes (a "billion laughs" file), a recursive alias, or a key given twice in one
  mapping are refused, each with its line.

Light on purpose: `check` and `diagnose` import it at start-up (PyYAML only inside load_yaml).
"""

from __future__ import annotations

import codecs
import errno
import os
import stat
from pathlib import Path
from typing import Any

from advisor.errors import InputError

MAX_BYTES = 16 * 2**20        # a space, a plan or a finder report is a few kilobytes
MAX_YAML_NODES = 1_000_000     # nodes once every alias is expanded (a real space has hundreds)

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _refuse_mode(path: Path, mode: int, what: str) -> None:
    if stat.S_ISDIR(mode):
        raise InputError(f"{path}: is a directory; give the {what} file")
    if not stat.S_ISREG(mode):
        raise InputError(f"{path}: is {_kind(mode)}, not a regular file; save the {what} to a file "
                         "and give that")


def regular_file(path: str | Path, what: str = "input") -> os.stat_result:
    """The stat of `path` when it is a regular file (through symlinks); else one clear line.
    Never opens the file, so a FIFO cannot block."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise InputError(f"{path}: a symlink to a file that does not exist") from None
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(f"{path}: a symlink loop") from None
        if exc.errno == errno.ENAMETOOLONG:
            raise InputError(f"{str(path)[:80]}...: file name too long") from None
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    _refuse_mode(path, st.st_mode, what)
    return st


def read_bytes(path: str | Path, what: str = "input", limit: int = MAX_BYTES) -> bytes:
    """The whole of a regular file of at most `limit` bytes."""
    path = Path(path)
    st = regular_file(path, what)
    if st.st_size > limit:
        raise InputError(f"{path}: {_size(st.st_size)}, more than a {what} can be "
                         f"({_size(limit)} at most)")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
                     | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise InputError(f"{path}: is not readable (permission denied)") from None
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        _refuse_mode(path, os.fstat(fd).st_mode, what)  # swapped for a FIFO since the stat
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(limit + 1)  # bounded even if the file grows while it is read
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise InputError(f"{path}: more than {_size(limit)}, more than a {what} can be")
    return data


def _size(n: int) -> str:
    for unit, div in (("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} bytes"


_BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
         (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))


def text_encoding(data: bytes) -> tuple[str, int]:
    """(encoding, length of its byte-order mark) of `data`: a BOM decides; without one, UTF-16
    is recognised by its zero bytes (ASCII text in UTF-16 has one in every pair), else UTF-8."""
    for bom, name in _BOMS:  # UTF-32 LE before UTF-16 LE: its BOM starts with UTF-16's
        if data.startswith(bom):
            return name, len(bom)
    head = data[:4096]
    pairs = len(head) // 2
    if pairs >= 2:
        odd, even = head[1::2].count(0), head[0::2].count(0)
        if odd >= 0.9 * pairs and even < 0.1 * pairs:
            return "utf-16-le", 0
        if even >= 0.9 * pairs and odd < 0.1 * pairs:
            return "utf-16-be", 0
    return "utf-8", 0


def decode_text(data: bytes, path: str | Path, what: str = "input") -> str:
    """`data` as text by text_encoding; one line naming the byte where it is not that encoding."""
    encoding, skip = text_encoding(data)
    try:
        text = data[skip:].decode(encoding)
    except UnicodeDecodeError as exc:
        shown = "UTF-8" if encoding == "utf-8" else encoding.upper()
        raise InputError(f"{path}: not {shown} text (byte {exc.start + skip}); not a usable {what}") from None
    if "\x00" in text:
        raise InputError(f"{path}: binary data (a NUL character); not a usable {what}")
    return text


def read_text(path: str | Path, what: str = "input", limit: int = MAX_BYTES) -> str:
    """A regular text file of at most `limit` bytes, decoded (UTF-8, UTF-16/32, any BOM)."""
    return decode_text(read_bytes(path, what, limit), path, what)


def parse_json(text: str, path: str | Path, what: str = "input") -> Any:
    """JSON from text, with one line for what the json module raises on odd documents."""
    import json

    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except RecursionError:
        raise InputError(f"{path}: JSON nested too deeply; not a usable {what}") from None
    except ValueError as exc:  # an integer of thousands of digits (sys.set_int_max_str_digits)
        raise InputError(f"{path}: not a usable {what} ({str(exc).splitlines()[0]})") from None


def load_json(path: str | Path, what: str = "input", limit: int = MAX_BYTES) -> Any:
    return parse_json(read_text(path, what, limit), path, what)


# --------------------------------------------------------------------------- YAML

def yaml_loader():
    """PyYAML's safe loader (the C one where built) that also reads `1e-5` as a number: YAML 1.1
    reads it as a string, people (and YAML 1.2 writers) mean a number."""
    import re

    import yaml

    global _LOADER
    if _LOADER is None:
        class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
            pass

        _Loader.add_implicit_resolver(
            "tag:yaml.org,2002:float",
            re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
            list("-+0123456789."),
        )
        _LOADER = _Loader
    return _LOADER


_LOADER = None


def parse_yaml(text: str, path: str | Path, what: str = "input",
               max_nodes: int = MAX_YAML_NODES, repeated: list | None = None) -> tuple[Any, Any]:
    """(data, root node) of one YAML document. The node graph is judged before any object is
    built: too many nodes once aliases are expanded, a recursive alias, a key given twice.
    With `repeated` (a list), a key given twice is appended to it as (key, line, first line)
    and the last value kept, as PyYAML (and so W&B) keeps it, instead of refused."""
    import yaml

    loader = yaml_loader()(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}" if mark else ""
            raise InputError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
        except RecursionError:
            raise InputError(f"{path}: YAML nested too deeply; not a usable {what}") from None
        if root is None:
            return None, None
        _judge_nodes(root, path, what, max_nodes, repeated)
        try:
            return loader.construct_document(root), root
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
            where = f":{mark.line + 1}" if mark else ""
            raise InputError(f"{path}{where}: not a usable {what} ({getattr(exc, 'problem', None) or exc})") from None
        except RecursionError:
            raise InputError(f"{path}: YAML nested too deeply; not a usable {what}") from None
    finally:
        loader.dispose()


def _judge_nodes(root: Any, path: str | Path, what: str, max_nodes: int, repeated: list | None = None) -> None:
    """Count the nodes with every alias expanded (each distinct node's size once: linear in the
    file, however large the expansion), refusing a cycle and a repeated mapping key."""
    import yaml

    sizes: dict[int, int] = {}
    visiting: set[int] = set()
    # iterative post-order walk: deep documents must not exhaust the Python stack
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            if isinstance(node, yaml.MappingNode):
                children = [n for pair in node.value for n in pair]
            elif isinstance(node, yaml.SequenceNode):
                children = node.value
            else:
                children = []
            size = 1 + sum(sizes[id(c)] for c in children)
            visiting.discard(key)
            sizes[key] = size
            if size > max_nodes:
                raise InputError(f"{path}:{node.start_mark.line + 1}: YAML anchors and aliases expand to "
                                 f"more than {max_nodes:,} values; not a usable {what}")
            continue
        if key in sizes:
            continue
        if key in visiting:
            raise InputError(f"{path}:{node.start_mark.line + 1}: a YAML alias that contains itself; "
                             f"not a usable {what}")
        visiting.add(key)
        stack.append((node, True))
        if isinstance(node, yaml.MappingNode):
            _no_repeated_keys(node, path, repeated)
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            continue
        for child in children:
            if id(child) in visiting:
                raise InputError(f"{path}:{child.start_mark.line + 1}: a YAML alias that contains itself; "
                                 f"not a usable {what}")
            if id(child) not in sizes:
                stack.append((child, False))


def _no_repeated_keys(node: Any, path: str | Path, repeated: list | None = None) -> None:
    import yaml

    seen: dict[str, int] = {}
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
            continue
        line = key.start_mark.line + 1
        if key.value in seen and repeated is not None:
            repeated.append((key.value, line, seen[key.value]))
        elif key.value in seen:
            raise InputError(f"{path}:{line}: key '{key.value}' is given twice (first on line "
                             f"{seen[key.value]}); YAML keeps only the last, so say it once")
        seen.setdefault(key.value, line)


def load_yaml(path: str | Path, what: str = "input", limit: int = MAX_BYTES,
              repeated: list | None = None) -> tuple[Any, Any, str]:
    """(data, root node, text) of a regular YAML file (see parse_yaml)."""
    text = read_text(path, what, limit)
    data, root = parse_yaml(text, path, what, repeated=repeated)
    return data, root, text
