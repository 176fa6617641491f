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
    pattern = re.compile(rf"python (?:-m paddle\.distributed\.launch [^\n]*?|-m )?{re.escape(script)}\b([^\n`|]*)")
    for doc in DOCS:
        for match in pattern.finditer(doc.read_text()):
            yield doc.name, match.group(1)


@pytest.mark.parametrize("script", ["train.py", "infer.py", "paddle_googlenet.export"])
def test_every_flag_in_the_docs_exists(script):
    from paddle_googlenet import export, inference

    parser = {"train.py": get_args_parser, "infer.py": inference.get_args_parser, "paddle_googlenet.export": export.get_args_parser}[script]()
    known = {option for action in parser._actions for option in action.option_strings}
    used = [(doc, flag) for doc, line in commands(script) for flag in re.findall(r"(?<![\w-])--[a-z][\w-]*", line)]
    assert used, f"no {script} command found in the docs"
    unknown = [(doc, flag) for doc, flag in used if flag not in known]
    assert not unknown, f"flags in the docs that {script} does not have: {unknown}"


# docs/googlenet.md and docs/figures.py: the figures and tables there are generated from the code.

FIGURES = REPO / "docs" / "figures.py"
IMG = REPO / "docs" / "img"
REGENERATE = "regenerate with `python docs/figures.py` (figures) or `python docs/figures.py --tables` (tables)"


@pytest.fixture(scope="module")
def figures():
    """docs/figures.py imported as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_figures", FIGURES)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def googlenet_units(figures):
    return figures.traced_units()


@pytest.fixture(scope="module")
def googlenet_md():
    return (REPO / "docs" / "googlenet.md").read_text()


def test_googlenet_md_tables_match_the_code(figures, googlenet_units, googlenet_md):
    for name, table in figures.all_tables(googlenet_units).items():
        assert table in googlenet_md, f"the {name} table of docs/googlenet.md is out of date; {REGENERATE}"


def test_committed_diagrams_are_what_figures_py_draws_now(figures, googlenet_units):
    assert (IMG / "inception_module.svg").read_text() == figures.inception_module_svg(googlenet_units), REGENERATE
    assert (IMG / "googlenet.svg").read_text() == figures.googlenet_svg(googlenet_units), REGENERATE


def test_diagrams_show_the_channels_of_inception_configs():
    from paddle_googlenet.models.googlenet import INCEPTION_CONFIGS

    network = (IMG / "googlenet.svg").read_text()
    for name, (c_in, ch1, r3, ch3, r5, ch5, proj) in INCEPTION_CONFIGS.items():
        assert f">{name}<" in network and f"Inception {ch1} + {ch3} + {ch5} + {proj}<" in network, name
    module = (IMG / "inception_module.svg").read_text()
    c_in, ch1, r3, ch3, r5, ch5, proj = INCEPTION_CONFIGS["ince3a"]
    for label in (f"{c_in} × 28 × 28", f"1×1 conv → {ch1}<", f"1×1 conv → {r3} (reduce)", f"3×3 conv → {ch3}<",
                  f"1×1 conv → {r5} (reduce)", f"5×5 conv → {ch5}<", f"1×1 conv → {proj}<",
                  f"{ch1} + {ch3} + {ch5} + {proj} = {ch1 + ch3 + ch5 + proj} × 28 × 28"):
        assert label in module, label


def test_figures_py_runs(figures, tmp_path):
    assert figures.main(["--no-curves", "--out", str(tmp_path)]) == 0
    assert {p.name for p in tmp_path.iterdir()} == {"inception_module.svg", "googlenet.svg"}


def test_every_figures_py_command_in_the_docs_parses(figures):
    import shlex

    lines = [line.split("#")[0] for _, line in commands("docs/figures.py")]
    assert lines, "no docs/figures.py command found in the docs"
    for line in lines:
        figures.get_args_parser().parse_args(shlex.split(line))  # exits on an unknown flag


def test_reduction_arithmetic_quoted_in_googlenet_md(figures, googlenet_md):
    numbers = figures.reduction_arithmetic()  # counted from real ConvReLU layers
    assert numbers["direct_weights"] == 192 * 5 * 5 * 96 == 460_800
    assert numbers["reduced_weights"] == 192 * 1 * 1 * 32 + 32 * 5 * 5 * 96 == 82_944
    assert numbers["direct_macs"] == 460_800 * 28 * 28 and numbers["reduced_macs"] == 82_944 * 28 * 28
    for value in numbers.values():
        assert f"{value:,}" in googlenet_md, value
    assert f"{numbers['direct_weights'] / numbers['reduced_weights']:.1f} times fewer weights" in googlenet_md


def test_other_numbers_quoted_in_googlenet_md(figures, googlenet_units, googlenet_md):
    prose = " ".join(googlenet_md.split())  # independent of line wrapping
    assert figures.depth_with_parameters(googlenet_units) == 22 and "**22 layers**" in prose
    main_fc, flat_fc, wide_fc = figures.head_comparison(googlenet_units)
    inference = [u for u in googlenet_units if not u[0].startswith("aux")]
    inference_params, all_params = sum(u[3] for u in inference), sum(u[3] for u in googlenet_units)
    assert inference_params == count_parameters(get_model("googlenet", aux_logits=False))
    for value in (main_fc, flat_fc, wide_fc, inference_params):
        assert f"{value:,}" in prose, value
    assert f"{wide_fc / inference_params:.0f} times the {inference_params:,}" in prose
    naive = figures.naive_chain(googlenet_units)
    weights_ratio = sum(r[3] for r in naive) / sum(r[5] for r in naive)
    macs_ratio = sum(r[4] for r in naive) / sum(r[6] for r in naive)
    assert f"weights {weights_ratio:.1f}-fold and their MACs {macs_ratio:.1f}-fold" in prose
    import paddle

    with paddle.LazyGuard():  # shapes only: initialising 58M weights takes seconds
        alexnet = count_parameters(get_model("alexnet"))
    assert f"AlexNet has {alexnet:,} here, {alexnet / inference_params:.1f} times as many" in prose
    aux = all_params - inference_params
    assert f"{aux:,} parameters of the two heads ({100 * aux / all_params:.0f} % of the total" in prose
    assert f"ours: {sum(u[4] for u in inference) / 1e9:.2f} G" in prose


def test_digits_curves_come_from_the_committed_metrics(figures, tmp_path):
    pytest.importorskip("matplotlib")
    records = figures.read_metrics(figures.METRICS_FILE)
    assert [r["epoch"] for r in records] == list(range(1, len(records) + 1)), "docs/data/digits_metrics.jsonl is incomplete"
    assert {"train_loss_aux1", "train_loss_aux2", "val_top1"} <= set(records[-1])
    figures.plot_curves(records, tmp_path / "curves.png")
    for png in (tmp_path / "curves.png", IMG / "digits_curves.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png


def test_digits_run_numbers_quoted_in_googlenet_md(figures, googlenet_md):
    prose = " ".join(googlenet_md.split())
    records = figures.read_metrics(figures.METRICS_FILE)
    first, epoch2, epoch3, epoch8, epoch9, last = (records[i] for i in (0, 1, 2, 7, 8, -1))
    best = max(records, key=lambda r: r["val_top1"])
    seconds, speeds = [r["seconds"] for r in records], [r["img_per_s"] for r in records]
    quoted = [
        f"{100 * first['val_top1']:.0f} % validation top-1",
        f"{100 * epoch2['val_top1']:.1f} % after epoch 2, back to {100 * epoch3['val_top1']:.1f} % after epoch 3",
        f"{100 * epoch3['train_top1_aux1']:.1f} % training top-1 and a loss of {epoch3['train_loss_aux1']:.2f}",
        f"main head is at {100 * epoch3['train_top1']:.1f} % and {epoch3['train_loss']:.2f}",
        f"learning rate drops to {epoch8['lr']:g} on the last step of epoch 8",
        f"training loss falls from {epoch8['train_loss']:.2f} to {epoch9['train_loss']:.2f}",
        f"validation top-1 rises from {100 * epoch8['val_top1']:.1f} % to {100 * epoch9['val_top1']:.1f} %",
        f"The best epoch, {best['epoch']}, reaches {100 * best['val_top1']:.1f} % validation top-1 (loss {best['val_loss']:.3f})",
        f"The last epoch ends at {100 * last['val_top1']:.1f} % ({100 * last['val_top5']:.1f} % top-5)",
        f"the {last['epoch']} epochs took {sum(seconds) / 60:.1f} minutes of training",
        f"({min(seconds):.0f}–{max(seconds):.0f} s and {min(speeds):.0f}–{max(speeds):.0f} images/s per epoch)",
    ]
    for text in quoted:
        assert text in prose, text
