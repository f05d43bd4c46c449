"""The one cache rule (tava_core.reuse): a record is reused only with the same key and its files."""
from __future__ import annotations

import json

import pytest

from tava_core.reuse import finished_record, run_key


def test_run_key_depends_on_content_not_on_key_order():
    assert run_key({"a": 1, "b": [1, 2]}) == run_key({"b": [1, 2], "a": 1})
    assert run_key({"a": 1, "b": [1, 2]}) != run_key({"a": 1, "b": [2, 1]})
    assert len(run_key("x")) == 24


@pytest.mark.parametrize("case", ["missing", "other key", "required file gone", "unreadable", "not a dict"])
def test_finished_record_refuses_what_is_not_an_identical_finished_run(tmp_path, case):
    record_file = tmp_path / "report.json"
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    key = run_key({"inputs": "abc", "settings": {"steps": 3}})
    content = {"run_key": key, "metric": 0.5}
    if case == "other key":
        content["run_key"] = run_key({"inputs": "abc", "settings": {"steps": 4}})
    if case == "required file gone":
        (tmp_path / "model.safetensors").unlink()
    if case != "missing":
        record_file.write_text("{truncated" if case == "unreadable" else
                               json.dumps([content]) if case == "not a dict" else json.dumps(content))
    assert finished_record(record_file, key, required=["model.safetensors"]) is None


def test_finished_record_returns_the_identical_run(tmp_path):
    key = run_key({"inputs": "abc"})
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "report.json").write_text(json.dumps({"run_key": key, "metric": 0.5}))
    assert finished_record(tmp_path / "report.json", key, required=["model.safetensors"]) == {
        "run_key": key, "metric": 0.5}


def test_finished_record_accepts_any_key_form_the_run_may_have_been_recorded_under(tmp_path):
    """A step whose key changed form (e.g. directories left out) passes the new key and the earlier one:
    a record under either is the same run; a record under neither is not."""
    new, earlier, other = (run_key({"form": form}) for form in ("new", "earlier", "other"))
    (tmp_path / "report.json").write_text(json.dumps({"run_key": earlier}))
    assert finished_record(tmp_path / "report.json", [new, earlier]) == {"run_key": earlier}
    assert finished_record(tmp_path / "report.json", [new, other]) is None
