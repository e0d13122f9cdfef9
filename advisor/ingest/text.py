"""Console text and notebooks: the values a training run printed, one row per epoch or evaluation.

One generic extractor serves every shape. Each line is cleaned (ANSI colours; a progress bar's
carriage returns and backspaces start a new line), then read for
- name-value pairs: 'loss: 0.31', 'val_loss=0.40', "'eval_loss': 0.1" in a printed dict,
  'Train Loss: 1.05', and 'train loss 0.31' between separators ('|', ', ', ' - ', ';');
  values in percent ('88.1%' is 0.881), with thousands separators, in scientific notation,
  'nan' and 'inf' in any case, or inside a repr ('tensor(0.31, ...)');
- an epoch marker: 'Epoch 3/50', 'epoch: 3', "'epoch': 0.22", 'Epoch [3/50]', or '[3/50]' at
  the start of a line;
- a section word that names the split of every value after it ('Val. Total Loss: 1.79, AUC: 50%').
Lines without values are skipped. The lines of one epoch become one row, the last value of each
name winning (Keras prints running means, the epoch's own value last): a line holding only an
epoch marker ('Epoch 3/50', Keras) opens the epoch for the lines after it, and so does a line with
values and a marker ('Epoch: 0, Loss: 1.60' followed by its 'Train.' and 'Val.' lines); a line
with held-out values closes it, so that what is printed after the last epoch (an `evaluate()`,
a test score) is not taken for it. A row is kept when it holds a loss. In a log that numbers its
epochs, values printed outside any epoch are left out.

What a format has that the generic part cannot know is kept to a few lines: Hugging Face's
closing summary dict ('train_runtime': it ends a run and is no point on a curve), and Keras'
header line. A notebook is its cells' text outputs, each cell read on its own (images are never
decoded); a file of several runs (several `fit` calls) is cut into runs by parts.split, where the
epoch counter restarts, or where a run's closing summary says so.
"""

from __future__ import annotations

import codecs
import json
import re
from array import array
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pandas as pd

from advisor.errors import InputError
from advisor.ingest.roles import is_counter, is_held_out, is_loss

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_REWRITE = re.compile(r"\r\n?|\n|\x08+")  # a line ends, or a progress bar is redrawn: a new line
_HAS_VALUE = re.compile(r"\d|nan|inf", re.IGNORECASE)

_NUM = r"(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
# a number not glued to a unit or a clock ('0s', '1:23', '3/50'), and not a tqdm bar ('100%|')
_VALUE = (rf"(?:[A-Za-z_][\w.]*\(\s*)?(?P<value>[-+]?(?:{_NUM}|nan|inf(?:inity)?))"
          r"(?P<pct>%(?!\s*\|))?(?![\w.%]|[:/]\d)")
_WORD = r"[A-Za-z_][\w.\-/()]*"
# 'loss: 0.3', 'val_loss=0.4', "'eval_loss': 0.1", 'Train Loss: 1.05' (a name of up to 4 words)
_PAIR = re.compile(rf"(?<![\w.\-/])['\"]?(?P<name>{_WORD}(?: {_WORD}){{0,3}})['\"]?\s*[:=]\s*{_VALUE}",
                   re.IGNORECASE)
# 'train loss 0.31' as a whole segment between separators (a name of up to 3 words)
_SPACED = re.compile(rf"^['\"]?(?P<name>{_WORD}(?: {_WORD}){{0,2}})['\"]?\s+{_VALUE}\s*$", re.IGNORECASE)
_SEGMENTS = re.compile(r"\s*(?:\||,\s|;|\t|\s-\s)\s*")
_EPOCH = re.compile(r"(?<![\w.])['\"]?epoch['\"]?\s*[:=#]?\s*[\[(]?\s*(?P<epoch>\d+(?:\.\d+)?)"
                    r"(?:\s*(?:/|of)\s*\d+)?\s*[\])]?(?![\w.]|/\d)", re.IGNORECASE)
_STEP = re.compile(r"(?<![\w.])(?P<name>global_step|step|iteration|iter)\s*[:=#]?\s*[\[(]?\s*(?P<step>\d+)"
                   r"(?:\s*/\s*\d+)?\s*[\])]?(?![\w.]|/\d)", re.IGNORECASE)
_BRACKET = re.compile(r"^\W{0,3}\[\s*(?P<epoch>\d+)\s*/\s*\d+\s*\]")  # '[5/50] loss ...'
_HEADER_BEFORE = re.compile(r"^(?:|.*(?:\s-\s|[:\]|>]\s*))$")  # nothing, or a logging prefix
_SECTION = re.compile(r"(?:^|(?<=[\s\-|:\]>]))(?P<section>train(?:ing)?|val(?:id(?:ation)?)?|eval(?:uation)?|"
                      r"test(?:ing)?|dev)\s*[.:]\s+(?=[A-Za-z'\"{])", re.IGNORECASE)
_SPLIT_WORD = re.compile(r"^(?:train|training|trn|val|valid|validation|eval|evaluation|test|testing|dev)\b",
                         re.IGNORECASE)
_WRAPPED_NUMBER = re.compile(r"^\.\d")  # a number hard-wrapped after its integer part
# 'cuda_dnn.cc:473' in a TensorFlow log line: a place in the source, not a value
_SOURCE_FILE = re.compile(r"\.(?:cc|cpp|cxx|c|h|hpp|py|pyx|java|js|ts|go|rs)$", re.IGNORECASE)


def _at_word(pattern: re.Pattern, line: str, low: str, word: str, quoted: bool = False) -> re.Match | None:
    """pattern.search(line), tried only where `word` starts a word (str.find is far cheaper
    than a regex scan with a look-behind over every position of a long line)."""
    start = low.find(word)
    while start >= 0:
        at = start - 1 if quoted and start and line[start - 1] in "'\"" else start
        if at == 0 or not (line[at - 1].isalnum() or line[at - 1] in "_."):
            m = pattern.match(line, at)
            if m:
                return m
        start = low.find(word, start + 1)
    return None


def _number(match: re.Match) -> float:
    text = match["value"].replace(",", "").lower()
    value = float(text.replace("infinity", "inf"))
    return value / 100.0 if match["pct"] else value


class _Line:
    __slots__ = ("epoch", "pairs", "header", "summary")

    def __init__(self, epoch: float | None, pairs: dict[str, float], header: bool) -> None:
        self.epoch, self.pairs, self.header = epoch, pairs, header
        # Hugging Face's closing dict ('train_runtime', an average 'train_loss'): a run's end
        self.summary = "train_runtime" in pairs


def parse_line(line: str) -> _Line | None:
    """One cleaned line: its epoch marker and its name-value pairs; None without either."""
    if not _HAS_VALUE.search(line):
        return None
    low = line.lower()  # cheap tests first: the marker searches cost more than the line
    epoch = None
    marker = _at_word(_EPOCH, line, low, "epoch", quoted=True)
    if marker:
        epoch = float(marker["epoch"])
    pairs: dict[str, float] = {}
    found = list(_PAIR.finditer(line))
    section = _SECTION.search(line, 0, found[0].end() if found else len(line)) \
        if any(w in low for w in ("train", "val", "eval", "test", "dev")) else None
    if section and (not found or section.start() <= found[0].start()):
        rest = line[section.end():]
        found = list(_PAIR.finditer(rest))
        prefix = section["section"].capitalize()
    else:
        rest, prefix = line, None
    if not found:  # 'train loss 0.31 | val loss 0.40'
        found = [m for m in (_SPACED.match(s) for s in _SEGMENTS.split(rest.strip())) if m]
    for m in found:
        name = m["name"].strip()
        if name.lower() == "epoch" or _SOURCE_FILE.search(name):
            continue  # the epoch is read as the marker
        if prefix and not _SPLIT_WORD.match(name):
            name = f"{prefix} {name}"
        pairs[name] = _number(m)
    if pairs and ("step" in low or "iter" in low) and not any(is_counter(name) for name in pairs):
        counter = next((m for w in ("global_step", "step", "iteration", "iter")
                        for m in [_at_word(_STEP, line, low, w)] if m), None)  # 'INFO step 100 | loss 0.3', 'Iter [100/5000] loss: 0.3'
        if counter:
            pairs[counter["name"]] = float(counter["step"])
    if marker is None:
        bracket = _BRACKET.match(line)
        if bracket:
            epoch = float(bracket["epoch"])
    if not pairs:
        if marker is None:
            return None
        # 'Epoch 3/50' alone on its line (after a logging prefix): Keras' header
        header = not re.search(r"[A-Za-z0-9]", line[marker.end():]) and bool(_HEADER_BEFORE.match(line[:marker.start()]))
        return _Line(epoch, pairs, True) if header else None
    return _Line(epoch, pairs, False)


def clean_lines(chunks: Iterable[str]) -> Iterator[str]:
    """Logical lines of console text: colours removed, each redraw of a progress bar a line of its
    own, and a number wrapped after its integer part ('val_recall: 0' / '.9938 - ...') joined."""
    prev: str | None = None
    for chunk in chunks:
        if "\x1b" in chunk:
            chunk = _ANSI.sub("", chunk)
        if "\r" in chunk or "\x08" in chunk or chunk.count("\n") > 1 or not chunk.endswith("\n"):
            lines = _REWRITE.split(chunk)
        else:  # the common case: one plain line
            lines = (chunk[:-1],)
        for line in lines:
            if not line.strip():
                continue
            if prev is not None and _WRAPPED_NUMBER.match(line) and prev[-1:].isdigit():
                prev += line
                continue
            if prev is not None:
                yield prev
            prev = line
    if prev is not None:
        yield prev


class Table:
    """Rows of named values, kept as compact float columns (a long log stays near its final size)."""

    def __init__(self) -> None:
        self.columns: dict[str, array] = {}
        self.nan: dict[str, array] = {}   # where a NaN was written
        self.n = 0
        self.starts: list[int] = []       # rows where a new run begins (known from the text)
        self.has_epoch = False

    def add(self, row: dict[str, float], epoch: float | None) -> None:
        if epoch is not None:
            row = {**row, "epoch": epoch}
            self.has_epoch = True
        for name, value in row.items():
            col = self.columns.get(name)
            if col is None:
                col = self.columns[name] = array("d", [np.nan]) * self.n
            col.append(value)
            if value != value:
                mask = self.nan.get(name)
                if mask is None:
                    mask = self.nan[name] = array("b", [0]) * self.n
                mask.append(1)
        self.n += 1
        for name, col in self.columns.items():
            if len(col) < self.n:
                col.append(np.nan)
        for name, mask in self.nan.items():
            if len(mask) < self.n:
                mask.append(0)


class Extractor:
    """Lines in, rows out: the epoch context of each line, the merge of one epoch's lines."""

    def __init__(self) -> None:
        self.table = Table()
        self.orphans: list[int] = []  # rows outside any epoch, in a log that may number them
        self.stepped: list[int] = []  # rows outside any epoch with a step of their own
        self._reset()
        self._after_summary: float | None = None  # the last epoch of a run closed by its summary
        self._new_run = False

    def _reset(self) -> None:
        self.context: float | None = None   # the epoch the next lines belong to, when open
        self.pending: dict[str, float] | None = None
        self.pending_epoch: float | None = None

    def _flush(self) -> None:
        row, epoch = self.pending, self.pending_epoch
        self.pending = None
        if not row or not any(is_loss(name) for name in row):
            return
        if self._after_summary is not None:
            if epoch is not None and epoch >= self._after_summary:
                return  # a final evaluation of the run that just closed, not a new run
            self._after_summary = None
        if self._new_run and self.table.n:
            self.table.starts.append(self.table.n)
        self._new_run = False
        if epoch is None:  # outside any epoch: a step line of its own, or a value to leave out
            (self.stepped if any(is_counter(n) for n in row) else self.orphans).append(self.table.n)
        self.table.add(row, epoch)

    def feed(self, lines: Iterable[str]) -> None:
        """One stream of text (a file, a notebook cell): its epoch context ends with it."""
        for text in clean_lines(lines):
            line = parse_line(text)
            if line is None:
                continue
            if line.header:
                self._flush()
                self.context = line.epoch
                continue
            if line.summary:
                self._flush()
                last = self.table.columns.get("epoch")
                self._after_summary = line.epoch if line.epoch is not None else (
                    last[-1] if last is not None and len(last) else float("inf"))
                self._new_run = True
                self.context = None
                continue
            epoch = line.epoch if line.epoch is not None else self.context
            own_row = any(is_counter(name) for name in line.pairs)  # 'step 100 loss 0.3': a row each
            if self.pending is not None and (own_row or epoch is None or epoch != self.pending_epoch):
                self._flush()
            if self.pending is None:
                self.pending, self.pending_epoch = dict(line.pairs), epoch
            else:
                self.pending.update(line.pairs)
            if own_row:
                self._flush()
            # an evaluation closes the epoch: later lines without a marker are not of it
            self.context = None if any(is_held_out(n) for n in line.pairs) else epoch
        self._flush()
        self._reset()

    def arrays(self, path: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], int, list[int]]:
        table = self.table
        if not table.n:
            raise InputError(f"{path}: no training values found (no line with a loss: 'loss: 0.31', "
                             f"'val_loss=0.40', Keras progress lines, printed dicts)")
        keep = None
        if table.has_epoch and self.orphans:
            keep = np.ones(table.n, dtype=bool)
            keep[self.orphans] = False
        columns, nan = {}, {}
        for name, col in table.columns.items():
            values = np.frombuffer(col, dtype=float)
            if name == "epoch" and self.stepped:
                # step lines printed before their epoch's summary line ('Epoch 3: val_loss=...')
                # belong to that epoch; those after the last one, to the last
                values = pd.Series(values).bfill().ffill().to_numpy()
            columns[name] = values if keep is None else values[keep]
        for name, mask in table.nan.items():
            m = np.frombuffer(mask, dtype=np.int8).astype(bool)
            nan[name] = m if keep is None else m[keep]
        starts = table.starts
        n = table.n
        if keep is not None:
            kept_before = np.cumsum(keep) - keep  # rows kept before each row
            starts = sorted({int(kept_before[s]) for s in starts if s < n})
            n = int(keep.sum())
        return columns, nan, n, [s for s in starts if 0 < s < n]


def text_encoding(path: Path) -> str:
    with path.open("rb") as fh:
        head = fh.read(4)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) and not head.startswith(codecs.BOM_UTF32_LE):
        return "utf-16"
    return "utf-8-sig"


def read_console(path: Path) -> Extractor:
    ex = Extractor()
    # newline='' keeps the carriage returns of progress bars: each redraw is a line of its own
    with path.open("r", encoding=text_encoding(path), errors="replace", newline="") as fh:
        ex.feed(fh)
    return ex


def read_notebook(path: Path) -> Extractor:
    """The text outputs of each code cell (streams, and the text of results and displays),
    cell by cell; images and widgets are never decoded."""
    try:
        with path.open("rb") as fh:
            nb = json.loads(fh.read())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable notebook ({exc})") from None
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if cells is None and isinstance(nb, dict):  # nbformat 3: cells inside worksheets
        cells = [c for ws in nb.get("worksheets", []) for c in ws.get("cells", [])]
    if not isinstance(cells, list):
        raise InputError(f"{path}: no 'cells' list; not a Jupyter notebook")
    ex = Extractor()
    for cell in cells:
        if not isinstance(cell, dict):
            continue
        texts = []
        for out in cell.get("outputs") or []:
            if not isinstance(out, dict):
                continue
            kind = out.get("output_type")
            if kind == "stream":
                text = out.get("text")
            elif kind in ("execute_result", "display_data", "pyout"):
                text = (out.get("data") or {}).get("text/plain", out.get("text"))
            else:
                continue
            if isinstance(text, list):
                text = "".join(t for t in text if isinstance(t, str))
            if isinstance(text, str):
                texts.append(text)
        if texts:
            ex.feed(["\n".join(texts)])
    return ex
