"""``table.tex`` and ``paired.tex``: the report's tables as LaTeX (booktabs, mean $\\pm$
std, the best of each column bold, the rows' tags as table notes, every special character
escaped), well-formed, and compiled by pdflatex where the machine has it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from mer_di.training.report import make_report
from mer_di.training.report_latex import table_latex, tex_escape
from tests.test_report import make_run

# what a row's tag may hold: every character LaTeX treats as special
NASTY = "tiny, 50% of clips & #2, lr_x ~1e-4^2 {a} $5 back\\slash, input 32->56"


def _runs(tmp_path: Path) -> list[Path]:
    one = make_run(tmp_path / "one", models=("vit_base_patch16_224", "learnet"),
                   configs=("baseline", "dualdi"), seeds=(0,), n_folds=4,
                   skill={"baseline": 0.3, "dualdi": 0.7})
    config = json.loads((one / "config.json").read_text())
    config["setup"] = {"vit_base_patch16_224": NASTY}
    (one / "config.json").write_text(json.dumps(config))
    two = make_run(tmp_path / "two", datasets=("samm",), models=("resnet34",),
                   configs=("baseline", "fliprot"), seeds=(0,), n_folds=4)
    return [one, two]


def _without_escapes(tex: str) -> str:
    return re.sub(r"\\[\\{}%&#$_]", "", tex)


def check_well_formed(tex: str) -> None:
    """Balanced braces and $ (escapes aside), begin/end nested in order, and every row of
    a tabular as wide as its column spec (multicolumns counted by their span)."""
    bare = _without_escapes(tex)
    depth = 0
    for ch in bare:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0, "a } closes nothing"
    assert depth == 0, "unclosed {"
    for line in bare.splitlines():
        if not line.startswith("%"):
            assert line.count("$") % 2 == 0, line
    stack = []
    for kind, env in re.findall(r"\\(begin|end)\{(\w+)\}", tex):
        if kind == "begin":
            stack.append(env)
        else:
            assert stack and stack.pop() == env, env
    assert not stack, stack
    for spec, body in re.findall(r"\\begin\{tabular\}\{(\w+)\}(.*?)\\end\{tabular\}", tex,
                                 re.S):
        for row in _without_escapes(body).split("\\\\")[:-1]:
            row = re.sub(r"\\(toprule|midrule|bottomrule|addlinespace|cmidrule\(lr\)\{[\d-]+\})",
                         "", row).strip()
            if not row:
                continue
            spans = sum(int(n) for n in re.findall(r"\\multicolumn\{(\d+)\}", row))
            cells = row.count("&") + 1
            width = cells - len(re.findall(r"\\multicolumn", row)) + spans
            assert width == len(spec), (spec, row)


def test_report_writes_latex_tables_that_are_well_formed(tmp_path):
    rep = make_report(_runs(tmp_path), out=tmp_path / "report", n_boot=200, figures=False)
    table = (tmp_path / "report" / "table.tex").read_text()
    paired = (tmp_path / "report" / "paired.tex").read_text()
    assert tmp_path / "report" / "table.tex" in rep.files
    for tex in (table, paired):
        check_well_formed(tex)
        assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
        assert "\\hline" not in tex
        # the tag's specials escaped, and it is a table note of the model's rows
        assert tex_escape(NASTY) in tex and NASTY not in tex
        assert "vit\\_base\\_patch16\\_224\\textsuperscript{1}" in tex
        assert "32$\\rightarrow$56" in tex
    assert "$\\pm$" in table and "±" not in table
    # one column per dataset's metric; the composite column absent (separate runs)
    assert "\\multicolumn{3}{c}{CASME II}" in table and "\\multicolumn{3}{c}{SAMM}" in table
    # the best mean of CASME II's UF1 column is bold, and it is the better configuration's
    long = rep.table[rep.table["dataset"] == "casme2"]
    best = long.loc[long["uf1_mean"].idxmax()]
    assert best["config"] == "dualdi"
    mean_table = table.split("\\end{table}")[0]
    assert f"\\textbf{{{100 * best['uf1_mean']:.2f}}} $\\pm$" in mean_table
    assert mean_table.count("\\textbf{") == 6  # CASME II's three columns and SAMM's three
    assert "\\Delta" in paired and "W/T/L" in paired


def _mixed(tmp_path: Path) -> list[Path]:
    """The runs of :func:`_runs`, and one more on CASME II under another class set."""
    return _runs(tmp_path) + [make_run(
        tmp_path / "three", models=("dianet",), configs=("baseline",), seeds=(0,), n_folds=4,
        classes=["negative", "positive", "surprise"], class_set="megc")]


def test_a_column_of_mixed_setups_is_lettered_and_has_no_best(tmp_path):
    make_report(_mixed(tmp_path), out=tmp_path / "report", n_boot=200, figures=False)
    table = (tmp_path / "report" / "table.tex").read_text()
    check_well_formed(table)
    mean_table = table.split("\\end{table}")[0]
    assert "\\textsuperscript{[b]}" in mean_table and "not one setup" in mean_table
    assert mean_table.count("\\textbf{") == 3 + 1  # SAMM's columns; 'not one setup'


def test_a_failed_row_says_why_in_a_note(tmp_path):
    rep = make_report(_runs(tmp_path)[:1], out=tmp_path / "report", n_boot=200, figures=False)
    first = rep.table.iloc[0].to_dict()
    failed = {c: first[c] for c in ("dataset", "class_set", "classes", "clips", "clip_set")}
    long = pd.concat([rep.table, pd.DataFrame([{
        **failed, "model": "my_net", "config": "baseline", "folds": 4,
        "failed": "4 unit(s) failed: out of memory at 100% & more"}])], ignore_index=True)
    tex = table_latex(long)
    check_well_formed(tex)
    assert "my\\_net & baseline & failed\\textsuperscript{2}" in tex
    assert "out of memory at 100\\% \\& more" in tex


def test_tex_escape():
    assert tex_escape("a_b 5% & #1 $x") == "a\\_b 5\\% \\& \\#1 \\$x"
    assert tex_escape("{~^}\\") == ("\\{\\textasciitilde{}\\textasciicircum{}\\}"
                                    "\\textbackslash{}")
    assert tex_escape("32->56 ± 1") == "32$\\rightarrow$56 $\\pm$ 1"


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no pdflatex on this machine")
def test_latex_tables_compile_in_a_plain_article(tmp_path):
    make_report(_mixed(tmp_path), out=tmp_path / "report", n_boot=200, figures=False)
    doc = tmp_path / "report" / "doc.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
                   "\\input{table.tex}\n\\input{paired.tex}\n\\end{document}\n")
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error",
                           doc.name], cwd=doc.parent, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (doc.parent / "doc.pdf").is_file()
    log = (doc.parent / "doc.log").read_text(errors="replace")
    assert "Missing character" not in log and "Undefined control" not in log
