"""The docs stay true to the code.

* Generated tables and diagrams are what the code produces now.
* The figures the docs quote are those computed from the code, or recorded in docs/data/: the tests
  look for each number (formatted as the docs write it), not for the sentences around it, so the prose
  can be reworded freely.
* Every command the docs show names a script, module or test file that exists, uses only flags its
  parser has, and, in a shell code block, parses as written.
"""

import re
import shlex
from collections import namedtuple
from pathlib import Path

import pytest

from paddle_googlenet.models import get_model, list_models
from paddle_googlenet.models.summary import count_parameters, markdown_table, total_macs
from paddle_googlenet.options import UsageError, get_args_parser, resolve, resolve_paths

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def flat(text):
    """``text`` with every run of whitespace made one space: independent of line wrapping."""
    return " ".join(text.split())


def quoted(text, number):
    """Whether the formatted ``number`` appears in ``text`` as a whole number, not inside a longer one."""
    return re.search(rf"(?<![\d.,]){re.escape(number)}(?!\d|[.,]\d)", text) is not None


def missing_numbers(text, numbers):
    text = flat(text)
    return [number for number in numbers if not quoted(text, number)]


# Generated tables -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["googlenet", "alexnet", "vgg16", "resnet50"])
def test_models_md_layer_tables_match_the_code(name):
    table = markdown_table(name)
    assert table in (REPO / "docs" / "models.md").read_text(), (
        f"the {name} table of docs/models.md is out of date; regenerate it with "
        f"`python -m paddle_googlenet.models.summary {name}`:\n{table}"
    )


def test_readme_model_table_matches_the_code():
    readme = (REPO / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| `")]
    for name in list_models():
        model = get_model(name)
        row = next(line for line in rows if f"`{name}`" in line.split("|")[1])
        assert f"{count_parameters(model):,}" in row, row
        assert f"{total_macs(model) / 1e9:.2f} G" in row, row


# Commands -----------------------------------------------------------------------------------------

SCRIPTS = ("train.py", "infer.py", "paddle_googlenet.export")
COMMAND = re.compile(
    r"python (?:-m paddle\.distributed\.launch [^\n`|]*?|-m )?(?P<script>train\.py|infer\.py|paddle_googlenet\.export)\b"
    r"(?P<args>[^\n`|]*)"
)
SHELL_BLOCKS = {"", "bash", "sh", "shell", "console"}
Command = namedtuple("Command", ["doc", "script", "words", "in_shell_block", "line"])


def shell_words(text):
    """The arguments of a command line: up to a comment or a shell operator, split as the shell would."""
    text = re.split(r"(?:^|\s)#", text)[0]
    text = re.split(r"\s(?:&&|\|\||;|>|<|2>)\s?", text)[0]
    try:
        return shlex.split(text)
    except ValueError:  # prose after an inline command, with an apostrophe
        return text.split()


def documented_commands():
    """Every ``python train.py``, ``infer.py`` or ``paddle_googlenet.export`` command in the docs, in code
    blocks or inline, with whether it is in a shell code block (and so meant to be run as written)."""
    for doc in DOCS:
        fence = None
        for line in doc.read_text().replace("\\\n", " ").splitlines():
            stripped = line.strip()
            if stripped.startswith("```"):
                fence = None if fence is not None else stripped[3:].strip()
                continue
            for match in COMMAND.finditer(line):
                yield Command(doc.name, match["script"], shell_words(match["args"]), fence in SHELL_BLOCKS, stripped)


def parser_of(script):
    from paddle_googlenet import export, inference

    return {"train.py": get_args_parser, "infer.py": inference.get_args_parser, "paddle_googlenet.export": export.get_args_parser}[script]()


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_flag_in_the_docs_exists(script):
    parser = parser_of(script)
    known = {option for action in parser._actions for option in action.option_strings}
    found = [command for command in documented_commands() if command.script == script]
    assert found, f"no {script} command found in the docs"
    unknown = [(command.doc, word) for command in found for word in command.words
               if word.startswith("--") and word.split("=")[0] not in known]
    assert not unknown, f"flags in the docs that {script} does not have: {unknown}"


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_command_in_a_shell_block_parses(script, capsys):
    runnable = [command for command in documented_commands()
                if command.script == script and command.in_shell_block and not {"--help", "-h"} & set(command.words)]
    assert runnable, f"no runnable {script} command found in the docs"
    for command in runnable:
        try:
            args = parser_of(script).parse_args(command.words)
            if script == "train.py":
                resolve(resolve_paths(args))  # the combinations train.py checks before anything else
        except (SystemExit, UsageError) as exc:
            pytest.fail(f"{command.doc}: `{command.line}` does not run as written: {exc} {capsys.readouterr().err.strip()}")


def test_every_python_command_names_a_file_or_module_that_exists():
    scripts = re.compile(r"python ((?:[\w.-]+/)*[\w.-]+\.py)\b")  # python train.py, python benchmarks/x.py
    modules = re.compile(r"python -m (paddle_googlenet(?:\.\w+)*)")
    tests = re.compile(r"python -m pytest ((?:tests/)[\w/.-]+\.py)")
    named, missing = [], []
    for doc in DOCS:
        text = doc.read_text()
        for path in scripts.findall(text) + tests.findall(text):
            named.append(path)
            if not (REPO / path).is_file():
                missing.append((doc.name, path))
        for module in modules.findall(text):
            named.append(module)
            base = REPO / module.replace(".", "/")
            if not (base.with_suffix(".py").is_file() or (base / "__main__.py").is_file()):
                missing.append((doc.name, f"-m {module}"))
    assert any(name.startswith("paddle_googlenet") for name in named), "no python -m paddle_googlenet... command found"
    assert not missing, f"commands in the docs that name no file or module of this repository: {missing}"


def test_docs_cite_only_files_of_this_repository():
    for doc in DOCS:
        if doc.name == "performance.md":  # rewritten separately
            continue
        text = doc.read_text()
        for absent in ("legacy" + "-spec", "legacy" + " spec", "cpu" + "-baseline", "shared" + "/reference"):
            assert absent not in text, f"{doc.name} cites {absent!r}, which is not in this repository"


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


@pytest.fixture(scope="module")
def digits_run(figures):
    """The records of the digits run that googlenet.md §9 describes (docs/data/digits_metrics.jsonl)."""
    return figures.read_metrics(figures.METRICS_FILE)


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
    pattern = re.compile(r"python docs/figures\.py\b([^\n`|]*)")
    lines = [match.group(1) for doc in DOCS for match in pattern.finditer(doc.read_text())]
    assert lines, "no docs/figures.py command found in the docs"
    for line in lines:
        figures.get_args_parser().parse_args(shell_words(line))  # exits on an unknown flag


def test_reduction_arithmetic_quoted_in_googlenet_md(figures, googlenet_md):
    numbers = figures.reduction_arithmetic()  # counted from real ConvReLU layers
    assert numbers["direct_weights"] == 192 * 5 * 5 * 96 == 460_800
    assert numbers["reduced_weights"] == 192 * 1 * 1 * 32 + 32 * 5 * 5 * 96 == 82_944
    assert numbers["direct_macs"] == 460_800 * 28 * 28 and numbers["reduced_macs"] == 82_944 * 28 * 28
    quotes = [f"{value:,}" for value in numbers.values()]
    quotes.append(f"{numbers['direct_weights'] / numbers['reduced_weights']:.1f}")  # how many times fewer
    assert not missing_numbers(googlenet_md, quotes)


def test_other_numbers_quoted_in_googlenet_md(figures, googlenet_units, googlenet_md):
    import paddle

    depth = figures.depth_with_parameters(googlenet_units)
    assert depth == 22  # the paper's count
    main_fc, flat_fc, wide_fc = figures.head_comparison(googlenet_units)
    inference = [u for u in googlenet_units if not u[0].startswith("aux")]
    inference_params, all_params = sum(u[3] for u in inference), sum(u[3] for u in googlenet_units)
    assert inference_params == count_parameters(get_model("googlenet", aux_logits=False))
    naive = figures.naive_chain(googlenet_units)
    with paddle.LazyGuard():  # shapes only: initialising 58M weights takes seconds
        alexnet = count_parameters(get_model("alexnet"))
    aux = all_params - inference_params
    numbers = [
        str(depth),
        *(f"{value:,}" for value in (main_fc, flat_fc, wide_fc, inference_params, alexnet, aux)),
        f"{wide_fc / inference_params:.0f}",  # the flattened head against the whole inference path
        f"{sum(r[3] for r in naive) / sum(r[5] for r in naive):.1f}",  # weights saved by the reductions
        f"{sum(r[4] for r in naive) / sum(r[6] for r in naive):.1f}",  # MACs saved by the reductions
        f"{alexnet / inference_params:.1f}",  # AlexNet against GoogLeNet's inference path
        f"{100 * aux / all_params:.0f} %",  # the auxiliary heads' share of the parameters
        f"{sum(u[4] for u in inference) / 1e9:.2f} G",  # inference MACs
    ]
    assert not missing_numbers(googlenet_md, numbers)


def test_digits_curves_come_from_the_committed_metrics(figures, digits_run, tmp_path):
    pytest.importorskip("matplotlib")
    assert [r["epoch"] for r in digits_run] == list(range(1, len(digits_run) + 1)), "docs/data/digits_metrics.jsonl is incomplete"
    assert {"train_loss_aux1", "train_loss_aux2", "val_top1"} <= set(digits_run[-1])
    figures.plot_curves(digits_run, tmp_path / "curves.png")
    for png in (tmp_path / "curves.png", IMG / "digits_curves.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png


def percent(value, digits=1):
    return f"{100 * value:.{digits}f} %"


def test_digits_run_numbers_quoted_in_googlenet_md(digits_run, googlenet_md):
    first, epoch2, epoch3, last = digits_run[0], digits_run[1], digits_run[2], digits_run[-1]
    decay = next(r for r in digits_run if r["lr"] < first["lr"])  # the epoch that ends with the decay
    after = digits_run[decay["epoch"]]  # the epoch after it
    best = max(digits_run, key=lambda r: r["val_top1"])
    seconds, speeds = [r["seconds"] for r in digits_run], [r["img_per_s"] for r in digits_run]
    numbers = [
        percent(first["val_top1"]), percent(epoch2["val_top1"]), percent(epoch3["val_top1"]),
        percent(epoch3["train_top1_aux1"]), f"{epoch3['train_loss_aux1']:.2f}",
        percent(epoch3["train_top1"]), f"{epoch3['train_loss']:.2f}",
        f"{decay['lr']:g}", str(decay["epoch"]), str(after["epoch"]),
        f"{decay['train_loss']:.2f}", f"{after['train_loss']:.2f}",
        percent(decay["val_top1"]), percent(after["val_top1"]),
        str(best["epoch"]), percent(best["val_top1"]), f"{best['val_loss']:.3f}",
        str(last["epoch"]), percent(last["val_top1"]), percent(last["val_top5"]),
        f"{sum(seconds) / 60:.1f}",  # minutes of training
        f"{min(seconds):.0f}", f"{max(seconds):.0f}", f"{min(speeds):.0f}", f"{max(speeds):.0f}",
    ]
    assert not missing_numbers(googlenet_md, numbers)


def test_digits_run_numbers_quoted_elsewhere(digits_run):
    last, best = digits_run[-1], max(digits_run, key=lambda r: r["val_top1"])
    readme = (REPO / "README.md").read_text()
    assert not missing_numbers(readme, [percent(last["val_top1"]), percent(best["val_top1"]), str(best["epoch"])])
    training = (REPO / "docs" / "training.md").read_text()
    assert not missing_numbers(training, [percent(last["val_top1"]), f"{100 * best['val_top1']:.2f} %"])
