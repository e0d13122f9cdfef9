"""Bad input: one line naming the file and what is wrong, exit code 2, never a traceback."""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import FIXTURES, run_cli


def _assert_one_line_error(result, name: str, *words: str) -> None:
    assert result.code == 2, (result.code, result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    assert name in lines[0], lines[0]
    for word in words:
        assert word in lines[0], lines[0]


CASES = {
    "empty.csv": (b"", ["empty"]),
    "header_only.csv": (b"epoch,loss,val_loss\n", ["header only"]),
    "no_loss.csv": (b"epoch,foo,bar\n1,2,3\n2,3,4\n", ["no loss or validation metric column"]),
    "non_numeric.csv": (b"epoch,loss,val_loss\n0,2.3,2.4\n1,abc,2.2\n2,1.9,2.0\n", ["row 3", "'loss'", "abc"]),
    "all_nan.csv": (b"epoch,loss,val_loss\n0,2.3,\n1,2.1,\n2,1.9,\n", ["'val_loss'", "no values"]),
    "binary.csv": (bytes(range(256)) * 4, ["binary"]),
    "truncated.json": (b'{"log_history": [{"loss": 2.3, "step": 1}, {"loss": 2.', ["JSON"]),
    "truncated.jsonl": (b'{"iteration": 1, "total_loss": 2.3}\n{"iteration": 2, "total_l', ["line 2", "JSON"]),
    "not_a_log.json": (b'{"hello": "world"}', []),
    "latin1.csv": ("epoch,loss\n0,2.3\n1,caf\xe9\n".encode("latin-1"), ["UTF-8"]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_file_gets_one_line_and_exit_2(tmp_path: Path, name: str) -> None:
    content, words = CASES[name]
    path = tmp_path / name
    path.write_bytes(content)
    result = run_cli("diagnose", path)
    _assert_one_line_error(result, name, *words)


def test_single_row_is_diagnosed_as_too_short(tmp_path: Path) -> None:
    path = tmp_path / "one.csv"
    path.write_text("epoch,loss,val_loss\n0,2.3,2.4\n")
    result = run_cli("diagnose", path, "--json")
    assert result.code == 0
    labels = [d["label"] for d in json.loads(result.out)["diagnoses"]]
    assert "insufficient_data" in labels


def test_missing_path(tmp_path: Path) -> None:
    _assert_one_line_error(run_cli("diagnose", tmp_path / "nope.csv"), "nope.csv", "no such file")


def test_directory(tmp_path: Path) -> None:
    _assert_one_line_error(run_cli("diagnose", tmp_path), tmp_path.name, "directory")


def test_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    path.write_text("epoch,loss\n0,1\n")
    result = run_cli("diagnose", path, "--format", "parquet")
    assert result.code == 2 and "--format" in result.err and "parquet" in result.err


def test_unknown_map_role_and_column(tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    path.write_text("epoch,loss\n0,1\n1,0.5\n")
    _assert_one_line_error(run_cli("diagnose", path, "--map", "speed=loss"), "speed", "unknown role")
    _assert_one_line_error(run_cli("diagnose", path, "--map", "val_loss=vl"), "run.csv", "no column 'vl'")


def test_usage_error_exit_2(tmp_path: Path) -> None:
    result = run_cli("diagnose")
    assert result.code == 2 and "Traceback" not in result.err


def test_report_never_overwrites_an_input(tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    content = "epoch,loss,val_loss\n" + "".join(f"{i},{2 - i * 0.1},{2.1 - i * 0.1}\n" for i in range(10))
    path.write_text(content)
    result = run_cli("diagnose", path, "--report", path)
    _assert_one_line_error(result, "run.csv", "input")
    assert path.read_text() == content


def test_report_into_missing_folder(tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    path.write_text("epoch,loss,val_loss\n0,2,2.1\n1,1.5,1.6\n")
    result = run_cli("diagnose", path, "--report", tmp_path / "no" / "r.md")
    _assert_one_line_error(result, "r.md", "does not exist")


# --- property-based: whatever the bytes, a clean exit, never a traceback -------------------

_cell = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-10**6, 10**6).map(str),
    st.text(alphabet=string.ascii_letters + string.digits + " .-+eE\"'", max_size=6),
    st.just(""),
)
_header = st.lists(st.sampled_from(["epoch", "step", "loss", "val_loss", "acc", "val_acc", "lr",
                                    "x", "train/loss", "eval_loss", ""]), min_size=1, max_size=6)


@st.composite
def malformed_csv(draw) -> bytes:
    header = draw(_header)
    rows = draw(st.lists(st.lists(_cell, min_size=0, max_size=len(header) + 2), max_size=12))
    sep = draw(st.sampled_from([",", "\t", ";"]))
    text = sep.join(header) + "\n" + "\n".join(sep.join(r) for r in rows)
    data = text.encode()
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(data)))
        data = data[:cut]
    return data


_json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False), st.integers(), st.text(max_size=5)),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@st.composite
def malformed_json(draw) -> bytes:
    keys = st.sampled_from(["loss", "eval_loss", "epoch", "step", "iteration", "total_loss", "mode",
                            "learning_rate", "eval_accuracy", "lr"])
    record = st.dictionaries(keys, st.one_of(st.floats(allow_nan=True), st.integers(), st.text(max_size=4),
                                             st.none(), _json_value), max_size=6)
    records = draw(st.lists(record, max_size=10))
    if draw(st.booleans()):
        text = json.dumps({"log_history": records})
    else:
        text = "\n".join(json.dumps(r) for r in records)
    data = text.encode()
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return data


def _assert_clean(result) -> None:
    assert result.code in (0, 1, 2), result
    assert "Traceback" not in result.err and "internal error" not in result.err, result.err
    if result.code == 2:
        assert len(result.err.strip().splitlines()) == 1, result.err


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=malformed_csv())
def test_malformed_csv_never_crashes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.csv"
    path.write_bytes(data)
    _assert_clean(run_cli("diagnose", path, "--json"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=malformed_json())
def test_malformed_json_never_crashes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.json"
    path.write_bytes(data)
    _assert_clean(run_cli("diagnose", path, "--json"))


# --- report F31, F33, F38 and UTF-16 logs (issue 16) ----------------------------------------

_PADDED = "epoch, loss, val_loss\n" + "".join(
    f"{e}, {1 / e:.4f}, {1 / e + 0.05 * e:.4f}\n" for e in range(1, 9))


def test_a_space_after_each_comma_is_layout_and_map_names_the_column(tmp_path: Path) -> None:
    path = tmp_path / "pad.csv"
    path.write_text(_PADDED)
    result = run_cli("diagnose", path, "--map", "train_loss=loss", "--json")
    assert result.code in (0, 1), result
    assert "train_loss=loss" in run_cli("diagnose", path).out.replace(" ", "")


def test_format_tsv_on_a_comma_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pad.csv"
    path.write_text(_PADDED)
    result = run_cli("diagnose", path, "--format", "tsv")
    assert result.code == 2 and "not separated by tabs" in result.err and "pad.csv" in result.err, result
    tabbed = tmp_path / "run.tsv"
    tabbed.write_text(_PADDED.replace(", ", "\t"))
    assert run_cli("diagnose", tabbed, "--format", "tsv").code in (0, 1)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_a_utf16_log_reads_as_its_utf8_twin(tmp_path: Path, encoding: str) -> None:
    source = FIXTURES / "runs" / "overfitting.keras.csv"
    twin = tmp_path / "run16.csv"
    data = source.read_text().encode(encoding)
    twin.write_bytes(data if encoding == "utf-16" else b"\xfe\xff" + data)
    a, b = run_cli("diagnose", source, "--json"), run_cli("diagnose", twin, "--json")
    assert b.code == a.code, b
    assert [d["code"] for d in json.loads(b.out)["diagnoses"]] == [d["code"] for d in json.loads(a.out)["diagnoses"]]
    broken = tmp_path / "broken.csv"
    broken.write_bytes(b"\xff\xfeA")
    result = run_cli("diagnose", broken)
    assert result.code == 2 and "broken.csv" in result.err and "UTF-16" in result.err, result


def test_huge_epoch_labels_are_not_printed_as_long_integers(tmp_path: Path) -> None:
    path = tmp_path / "huge.csv"
    path.write_text("epoch,loss,val_loss\n" + "".join(
        f"{10 ** 300 + e},{1 / e:.4f},{1 / e + 0.1:.4f}\n" for e in range(1, 7)))
    result = run_cli("diagnose", path, "--json")
    assert result.code in (0, 1), result
    assert "0" * 30 not in result.out


def test_search_workers_are_bounded() -> None:
    result = run_cli("search", "--demo", "--workers", "100000")
    assert result.code == 2 and "--workers" in result.err
