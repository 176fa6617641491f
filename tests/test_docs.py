"""The docs stay true to the code: generated tables match it, and every flag they mention exists."""

import re
from pathlib import Path

import pytest

from paddle_googlenet.models import get_model, list_models
from paddle_googlenet.models.summary import count_parameters, markdown_table, total_macs
from paddle_googlenet.training import get_args_parser

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@pytest.mark.parametrize("name", ["googlenet", "alexnet", "vgg16", "resnet50"])
def test_models_md_layer_tables_match_the_code(name):
    assert markdown_table(name) in (REPO / "docs" / "models.md").read_text()


def test_readme_model_table_matches_the_code():
    readme = (REPO / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| `")]
    for name in list_models():
        model = get_model(name)
        row = next(line for line in rows if f"`{name}`" in line.split("|")[1])
        assert f"{count_parameters(model):,}" in row, row
        assert f"{total_macs(model) / 1e9:.2f} G" in row, row


def commands(script):
    """Every `python <script> ...` command line written in the docs, with the file it is in."""
    pattern = re.compile(rf"python (?:-m paddle\.distributed\.launch [^\n]*?)?{re.escape(script)}\b([^\n`|]*)")
    for doc in DOCS:
        for match in pattern.finditer(doc.read_text()):
            yield doc.name, match.group(1)


def test_every_train_flag_in_the_docs_exists():
    known = {option for action in get_args_parser()._actions for option in action.option_strings}
    used = [(doc, flag) for doc, line in commands("train.py") for flag in re.findall(r"(?<![\w-])--[a-z][\w-]*", line)]
    assert used, "no train.py command found in the docs"
    unknown = [(doc, flag) for doc, flag in used if flag not in known]
    assert not unknown, f"flags in the docs that train.py does not have: {unknown}"
