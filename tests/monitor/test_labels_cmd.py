"""`radwatch labels derive` end to end through monitor.cli.main on NDJSON files: output
lines, bad lines by number, exit codes, and no report text in logs or on the terminal."""

from __future__ import annotations

import json
import logging

import pytest

from collectors.labeler import default_labeler
from monitor import cli

MARKER = "PHI-MARKER-7f3a Jane Doe MRN 0042"


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def read_out(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_derive_labels_each_line(tmp_path, capsys):
    src = write_lines(tmp_path / "in.ndjson", [
        json.dumps({"id": "r1", "text": "FINDINGS: No pneumothorax. Small left effusion."}),
        json.dumps({"id": 2, "text": "IMPRESSION: Possible right lower lobe pneumonia."}),
        "",
        json.dumps({"id": "r3", "text": "Normal chest."}),
    ])  # fmt: skip
    out = tmp_path / "out.ndjson"
    assert cli.main(["labels", "derive", "--in", str(src), "--out", str(out)]) == 0
    lines = read_out(out)
    described = default_labeler().describe()
    assert lines == [
        {"id": "r1", "labels": {"pleural_effusion": 1, "pneumothorax": 0}, "labeler": described},
        {"id": 2, "labels": {"pneumonia": -1}, "labeler": described},
        {"id": "r3", "labels": {}, "labeler": described},
    ]
    assert "labelled" in capsys.readouterr().out


def test_findings_evidence_and_json_summary(tmp_path, capsys):
    text = "No pneumothorax. Cardiomegaly."
    src = write_lines(tmp_path / "in.ndjson", [json.dumps({"id": "a", "text": text})])
    out = tmp_path / "out.ndjson"
    code = cli.main(["labels", "derive", "--in", str(src), "--out", str(out),
                     "--findings", "pneumothorax,nodule", "--evidence", "--json"])  # fmt: skip
    assert code == 0
    (line,) = read_out(out)
    assert line["labels"] == {"pneumothorax": 0}
    span = line["evidence"]["pneumothorax"]
    assert text[span["start"] : span["end"]] == "No pneumothorax."
    assert json.loads(capsys.readouterr().out)["labelled"] == 1


def test_bad_lines_are_named_by_number_and_the_rest_go_on(tmp_path, capsys):
    src = write_lines(tmp_path / "in.ndjson", [
        json.dumps({"id": "ok1", "text": "No effusion."}),
        "{not json " + MARKER,
        json.dumps({"id": "x", "text": 7}),
        json.dumps([MARKER]),
        json.dumps({"text": MARKER}),
        json.dumps({"id": "ok2", "text": "Pneumothorax."}),
    ])  # fmt: skip
    out = tmp_path / "out.ndjson"
    assert cli.main(["labels", "derive", "--in", str(src), "--out", str(out)]) == 1
    assert [line["id"] for line in read_out(out)] == ["ok1", "ok2"]
    err = capsys.readouterr().err.splitlines()
    assert [line.split(":")[2].strip() for line in err] == [
        "line 2", "line 3", "line 4", "line 5",
    ]  # fmt: skip
    assert "not_json" in err[0] and "wrong_type" in err[1] and "missing_field" in err[3]
    assert not any(MARKER[:15] in line for line in err)


def test_a_missing_input_file_is_exit_2_in_one_line(tmp_path, capsys):
    code = cli.main(["labels", "derive", "--in", str(tmp_path / "absent.ndjson"),
                     "--out", str(tmp_path / "out.ndjson")])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot read" in err[0] and "absent.ndjson" in err[0]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--findings", "spleen"], "--findings not in the lexicon: spleen"),
        (["--model", "m"], "--model needs --lexicon"),
        (["--lexicon", "LEX"], "score_map names findings not in the lexicon"),
    ],
)
def test_usage_errors_are_exit_2(tmp_path, capsys, extra, message):
    src = write_lines(tmp_path / "in.ndjson", [json.dumps({"id": 1, "text": "x"})])
    (tmp_path / "lex.toml").write_text('[score_map]\np = "spleen"\n')
    extra = [str(tmp_path / "lex.toml") if a == "LEX" else a for a in extra]
    code = cli.main(["labels", "derive", "--in", str(src), "--out", str(tmp_path / "o"), *extra])
    assert code == 2
    assert message in capsys.readouterr().err


def test_a_site_lexicon_file_is_used_and_fingerprinted(tmp_path):
    lexicon = tmp_path / "lex.toml"
    lexicon.write_text('name = "site"\n[terms]\nnodule = ["spiculated opacity"]\n')
    src = write_lines(tmp_path / "in.ndjson", [
        json.dumps({"id": 1, "text": "Spiculated opacity in the right apex."}),
    ])  # fmt: skip
    out = tmp_path / "out.ndjson"
    assert cli.main(["labels", "derive", "--in", str(src), "--out", str(out),
                     "--lexicon", str(lexicon)]) == 0  # fmt: skip
    (line,) = read_out(out)
    assert line["labels"] == {"nodule": 1} and line["labeler"]["name"] == "site"
    assert line["labeler"]["fingerprint"] != default_labeler().fingerprint


def test_no_report_text_reaches_logs_or_output(tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    src = write_lines(tmp_path / "in.ndjson", [
        json.dumps({"id": "p1", "text": f"FINDINGS: {MARKER}. No pneumothorax."}),
        json.dumps({"id": "p2", "text": MARKER * 10_000}),  # past the string limit
        f'{{"id": "p3", "text": "{MARKER}"',
    ])  # fmt: skip
    out = tmp_path / "out.ndjson"
    assert cli.main(["-v", "labels", "derive", "--in", str(src), "--out", str(out),
                     "--evidence"]) == 1  # fmt: skip
    captured = capsys.readouterr()
    for where in (caplog.text, captured.out, captured.err, out.read_text()):
        assert "PHI-MARKER" not in where and "Jane" not in where
    assert "line 2: string_too_long" in captured.err and "line 3: not_json" in captured.err
