"""What the docs say stays true.

* Every command a reader copies works: each ``train.py``, ``infer.py``, ``python -m
  paddle_googlenet.export`` and ``python -m paddle_googlenet.convert_v2`` line of a shell block parses
  with the tool's own parser (``train.py``'s also passes the checks that need no files); every flag
  the docs mention exists; every ``python X.py`` and ``python -m M`` names something that exists; every
  Python block compiles.
* Every relative link, image and anchor resolves, every repository path the docs name exists, and the
  docs cite nothing outside the repository.
* Generated tables and diagrams are what the code produces now (``docs/figures.py``,
  ``paddle_googlenet.models.summary``), and the table of defaults is ``paddle_googlenet/options.py``'s.
* Figures quoted from runs are computed here from the committed result files (``docs/data/``,
  ``benchmarks/results/``), so a re-recorded run names every sentence that no longer matches.
* The docs are guides, not a diary: outside docs/performance.md's tables they hold no timestamps, load
  averages, commit hashes of this repository or "today's code".

The tests look for numbers as the docs format them, not for the sentences around them.
"""

import json
import re
import shlex
import shutil
import subprocess
from collections import namedtuple
from pathlib import Path

import pytest

from paddle_googlenet.models import get_model, list_models
from paddle_googlenet.models.summary import count_parameters, markdown_table, total_macs
from paddle_googlenet.options import DATASET_DEFAULTS, DEFAULTS, UsageError, get_args_parser, resolve, resolve_paths

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
OWN_DOCS = [doc for doc in DOCS if doc.name != "performance.md"]  # performance.md has its own test
DATA = REPO / "docs" / "data"
RESULTS = REPO / "benchmarks" / "results"
IMG = REPO / "docs" / "img"
FIGURES = REPO / "docs" / "figures.py"


def read(name):
    return (REPO / name).read_text(encoding="utf-8")


def flat(text):
    """``text`` with every run of whitespace made one space: independent of line wrapping."""
    return " ".join(text.split())


def quoted(text, number):
    """Whether the formatted ``number`` appears in ``text`` as a whole number, not inside a longer one."""
    return re.search(rf"(?<![\d.,]){re.escape(number)}(?!\d|[.,]\d)", text) is not None


def missing_numbers(text, numbers):
    text = flat(text)
    return [number for number in numbers if not quoted(text, number)]


def percent(value, digits=1):
    return f"{100 * value:.{digits}f} %"


def outside_code(text):
    """The lines of a Markdown text that are not inside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


# Generated tables -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["googlenet", "alexnet", "vgg16", "resnet50"])
def test_models_md_layer_tables_match_the_code(name):
    table = markdown_table(name)
    assert table in read("docs/models.md"), (
        f"the {name} table of docs/models.md is out of date; regenerate it with "
        f"`python -m paddle_googlenet.models.summary {name}`:\n{table}"
    )


def test_readme_model_table_matches_the_code():
    rows = [line for line in read("README.md").splitlines() if line.startswith("| `")]
    for name in list_models():
        model = get_model(name)
        row = next(line for line in rows if f"`{name}`" in line.split("|")[1])
        assert f"{count_parameters(model):,}" in row, row
        assert f"{total_macs(model) / 1e9:.2f} G" in row, row


def table_rows(text, first_header):
    """{first cell: [cells]} of the Markdown table whose header row starts with ``| first_header |``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def shown(value):
    """A default as the table of docs/training.md writes it."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:g}"
    return f"`{value}`"


def test_training_md_defaults_are_options_py_defaults():
    """The table of defaults in docs/training.md is paddle_googlenet/options.py's (DEFAULTS, DATASET_DEFAULTS)."""
    rows = table_rows(read("docs/training.md"), "Flag")
    for name, value in DEFAULTS.items():
        flag = f"`--{name.replace('_', '-')}`"
        assert flag in rows, f"docs/training.md's table of defaults has no row for {flag}"
        default, digits = rows[flag][0], rows[flag][1]
        if shown(value) is not None:
            assert default.startswith(shown(value)), f"{flag}: the code's default is {value}, the table says {default!r}"
        else:
            assert default.lower().startswith(("none", "off", "the model", "the legacy", "one per core", "0.01")), (flag, default)
        if name in DATASET_DEFAULTS["digits"]:
            expected = shown(DATASET_DEFAULTS["digits"][name])
            assert digits.startswith(expected or "none"), f"{flag}: the digits default is {expected}, the table says {digits!r}"
        else:
            assert digits == "", f"{flag}: the digits take the general default, the table says {digits!r}"
    assert rows["`--lr`"][0].startswith("0.01 (0.1 for `resnet*`)")  # options.legacy_lr


# Commands -----------------------------------------------------------------------------------------

TOOLS = ("train.py", "infer.py", "paddle_googlenet.export", "paddle_googlenet.convert_v2")
COMMAND = re.compile(
    r"python (?:-m paddle\.distributed\.launch [^\n`|]*?|-m )?"
    r"(?P<tool>train\.py|infer\.py|paddle_googlenet\.export|paddle_googlenet\.convert_v2)\b(?P<args>[^\n`|]*)"
)
SHELL_BLOCKS = {"", "bash", "sh", "shell", "console"}
Command = namedtuple("Command", ["doc", "tool", "words", "in_shell_block", "line"])


def shell_words(text):
    """The arguments of a command line: up to a comment or a shell operator, split as the shell would."""
    text = re.split(r"(?:^|\s)#", text)[0]
    text = re.split(r"\s(?:&&|\|\||;|>|<|2>)\s?", text)[0]
    try:
        return shlex.split(text)
    except ValueError:  # prose after an inline command, with an apostrophe
        return text.split()


def documented_commands():
    """Every command of the four tools in the docs, in code blocks or inline, with whether it is in a shell
    code block (and so meant to be run as written)."""
    for doc in DOCS:
        fence = None
        for line in doc.read_text(encoding="utf-8").replace("\\\n", " ").splitlines():
            stripped = line.strip()
            if stripped.startswith("```"):
                fence = None if fence is not None else stripped[3:].strip()
                continue
            for match in COMMAND.finditer(line):
                yield Command(doc.name, match["tool"], shell_words(match["args"]), fence in SHELL_BLOCKS, stripped)


def parser_of(tool):
    from paddle_googlenet import convert_v2, export, inference

    return {"train.py": get_args_parser, "infer.py": inference.get_args_parser, "paddle_googlenet.export": export.get_args_parser,
            "paddle_googlenet.convert_v2": convert_v2.get_args_parser}[tool]()


def options_of(parser):
    return {option for action in parser._actions for option in action.option_strings}


@pytest.mark.parametrize("tool", TOOLS)
def test_every_command_in_a_shell_block_parses(tool, capsys):
    runnable = [command for command in documented_commands()
                if command.tool == tool and command.in_shell_block and not {"--help", "-h"} & set(command.words)]
    assert runnable, f"no runnable {tool} command found in the docs"
    for command in runnable:
        try:
            args = parser_of(tool).parse_args(command.words)
            if tool == "train.py":
                resolve(resolve_paths(args))  # the combinations train.py checks before it reads any file
        except (SystemExit, UsageError) as exc:
            pytest.fail(f"{command.doc}: `{command.line}` does not run as written: {exc} {capsys.readouterr().err.strip()}")


@pytest.mark.parametrize("tool", TOOLS)
def test_every_flag_of_a_documented_command_exists(tool):
    known = options_of(parser_of(tool))
    found = [command for command in documented_commands() if command.tool == tool]
    unknown = [(command.doc, word) for command in found for word in command.words
               if word.startswith("--") and word.split("=")[0] not in known]
    assert not unknown, f"flags in the docs that {tool} does not have: {unknown}"


# Flags the docs mention that belong to other programs, and which program.
OTHER_PROGRAMS = {
    "--port": "visualdl", "--host": "visualdl", "--disable-telemetry": "visualdl",
    "--nproc_per_node": "paddle.distributed.launch", "--devices": "paddle.distributed.launch",
    "--master": "paddle.distributed.launch", "--nnodes": "paddle.distributed.launch", "--rank": "paddle.distributed.launch",
    "--model-ema": "torchvision/timm", "--model-ema-decay": "torchvision/timm", "--model-ema-steps": "torchvision",
    "--all": "python -m paddle_googlenet.models.summary",
    "--smoothing": "timm", "--lr-scheduler": "torchvision", "--sched": "timm", "--lr-warmup-epochs": "torchvision",
    "--lr-warmup-method": "torchvision", "--lr-warmup-decay": "torchvision", "--clip-grad": "timm", "--clip-mode": "timm",
}


def test_every_flag_mentioned_in_the_docs_exists(figures):
    """Any ``--flag`` in the docs (performance.md aside) is one of ours, or one of the programs in OTHER_PROGRAMS."""
    ours = set().union(*(options_of(parser_of(tool)) for tool in TOOLS), options_of(figures.get_args_parser()))
    unknown = sorted({(doc.name, flag) for doc in OWN_DOCS
                      for flag in re.findall(r"(?<![\w-])--[a-zA-Z][\w-]*", doc.read_text(encoding="utf-8"))
                      if flag not in ours and flag not in OTHER_PROGRAMS})
    assert not unknown, f"flags in the docs that no program has: {unknown}"


def test_every_python_command_names_a_file_or_module_that_exists():
    import importlib.util

    scripts = re.compile(r"python ((?:[\w.-]+/)*[\w.-]+\.py)\b")  # python train.py, python benchmarks/x.py
    modules = re.compile(r"python -m ([A-Za-z_][\w.]*)")
    missing, named = [], set()
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for path in scripts.findall(text):
            named.add(path)
            if not (REPO / path).is_file():
                missing.append((doc.name, path))
        for module in modules.findall(text):
            module = module.rstrip(".")
            named.add(module)
            base = REPO / module.replace(".", "/")
            if module.split(".")[0] == "paddle_googlenet":
                exists = base.with_suffix(".py").is_file() or (base / "__main__.py").is_file()
            else:
                exists = importlib.util.find_spec(module) is not None
            if not exists:
                missing.append((doc.name, f"-m {module}"))
    assert {"train.py", "infer.py", "paddle_googlenet.export", "paddle_googlenet.convert_v2"} <= named
    assert not missing, f"commands in the docs that name nothing that exists: {missing}"


def test_every_python_block_compiles():
    for doc in DOCS:
        for number, block in enumerate(re.findall(r"```python\n(.*?)```", doc.read_text(encoding="utf-8"), re.S)):
            compile(block, f"{doc.name}, python block {number + 1}", "exec")


# Links, paths and what the docs cite ----------------------------------------------------------------

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading):
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(doc):
    found, seen = set(), {}
    for line in outside_code(doc.read_text(encoding="utf-8")):
        match = re.match(r"#{1,6} (.+)", line)
        if match:
            base = slug(match[1])
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def test_every_link_and_image_points_to_something_that_exists():
    broken = []
    for doc in DOCS:
        for target in LINK.findall(doc.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            file = (doc.parent / path).resolve() if path else doc
            if REPO not in file.parents and file != REPO:
                broken.append((doc.name, target, "outside the repository"))
            elif not file.exists():
                broken.append((doc.name, target, "no such file"))
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                broken.append((doc.name, target, f"no heading with this anchor in {file.name}"))
    assert not broken, f"links that lead nowhere: {broken}"


def test_every_repository_path_the_docs_name_exists():
    """Paths in backticks such as `paddle_googlenet/safe_load.py` or `tests/test_training.py::test_x`."""
    pattern = re.compile(r"`((?:paddle_googlenet|tests|docs|benchmarks|\.ci)/[\w./-]*)(?:::\w+)?`")
    missing = sorted({(doc.name, path) for doc in OWN_DOCS for path in pattern.findall(doc.read_text(encoding="utf-8"))
                      if "*" not in path and not (REPO / path).exists()})
    assert not missing, f"paths in the docs that the repository does not have: {missing}"


def source_file(name):
    """The file of the package a doc means by ``name`` (``training.py``, ``data/lists.py``, ``models/layers.py``)."""
    for candidate in (REPO / name, REPO / "paddle_googlenet" / name):
        if candidate.is_file():
            return candidate
    return None


def test_every_code_reference_names_something_in_that_file():
    """`training.py`: `build_optimizer` and `engine.train_one_epoch` in the docs: the name is in that file."""
    by_file = re.compile(r"`((?:\w+/)*\w+\.py)`: `(\w+)")
    dotted = re.compile(r"`(\w+)\.([A-Za-z_]\w*)")
    missing = []
    for doc in OWN_DOCS:
        text = doc.read_text(encoding="utf-8")
        references = by_file.findall(text) + [(f"{module}.py", name) for module, name in dotted.findall(text)
                                               if name != "py" and source_file(f"{module}.py")]
        for path, name in references:
            file = source_file(path)
            if file is None and "/" in path:
                missing.append((doc.name, path, "no such file"))
            elif file is not None and not re.search(rf"\b{re.escape(name)}\b", file.read_text(encoding="utf-8")):
                missing.append((doc.name, f"{path}: {name}"))
    assert not missing, f"code the docs refer to that is not where they say: {missing}"


def test_docs_cite_only_files_of_this_repository():
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for absent in ("/work/", "shared_changes", "legacy" + "-spec", "cpu" + "-baseline", "shared" + "/reference"):
            assert absent not in text, f"{doc.name} cites {absent!r}, which is not in this repository"


# A guide, not a diary -------------------------------------------------------------------------------

DIARY = {
    "a time of day": re.compile(r"\b\d{1,2}:\d{2}(?::\d{2})? ?UTC\b"),
    "a date": re.compile(r"\b(?:19|20)\d\d-\d\d-\d\d\b"),
    "a load average": re.compile(r"load average|\bload \d+\.\d+", re.I),
    "today's code": re.compile(r"today.s code|the current code|the code of that time|with the code of", re.I),
    "a target met": re.compile(r"target (?:of [^.]* )?is met", re.I),
}


@pytest.mark.parametrize("doc", OWN_DOCS, ids=lambda doc: doc.name)
def test_docs_hold_no_timestamps_load_averages_or_narrated_code_history(doc):
    text = flat(doc.read_text(encoding="utf-8"))
    found = {what: pattern.findall(text) for what, pattern in DIARY.items()}
    assert not any(found.values()), f"{doc.name} narrates when and how its figures were made: {found}"


@pytest.mark.parametrize("doc", OWN_DOCS, ids=lambda doc: doc.name)
def test_docs_cite_no_commit_of_this_repository(doc):
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    words = sorted(set(re.findall(r"(?<![\w.,/-])[0-9a-f]{7,40}(?![\w/-])", doc.read_text(encoding="utf-8"))))
    if not words:
        return
    answer = subprocess.run(["git", "cat-file", "--batch-check"], input="\n".join(words) + "\n", cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    commits = [word for word, line in zip(words, answer) if line.split()[1:2] == ["commit"]]
    assert not commits, f"{doc.name} names commits of this repository ({commits}): describe what the code does instead"


# docs/googlenet.md and docs/figures.py: the figures and tables there are generated from the code.

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
    return read("docs/googlenet.md")


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
    lines = [match.group(1) for doc in DOCS for match in pattern.finditer(doc.read_text(encoding="utf-8"))]
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


# The quick-start run: docs/data/digits_metrics.jsonl, docs/data/digits_confusion.json, benchmarks/results/quickstart.json


@pytest.fixture(scope="module")
def digits_run(figures):
    """The records of the quick-start run that googlenet.md §9 describes."""
    records = figures.read_metrics(figures.METRICS_FILE)
    assert [r["epoch"] for r in records] == list(range(1, len(records) + 1)), "docs/data/digits_metrics.jsonl is incomplete"
    return records


@pytest.fixture(scope="module")
def digits_confusion(figures):
    return figures.read_confusion(figures.CONFUSION_FILE)


def best_epoch(records, key="val_top1"):
    return max(records, key=lambda r: r[key])  # the first of equal ones, as best.pdckpt


def test_confusion_matrix_is_that_of_the_best_checkpoint(digits_run, digits_confusion):
    matrix, class_names = digits_confusion
    best = best_epoch(digits_run)
    assert class_names == [str(digit) for digit in range(10)]
    assert matrix.sum() == 359  # the digits' validation split
    assert matrix.trace() / matrix.sum() == pytest.approx(best["val_top1"], abs=1e-9), \
        "docs/data/digits_confusion.json is not the --eval-only report of the run's best checkpoint"


def test_pictures_are_drawn_from_the_committed_files(figures, digits_run, tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    assert {"train_loss_aux1", "train_loss_aux2", "val_top1"} <= set(digits_run[-1])
    figures.plot_curves(digits_run, tmp_path / "curves.png")
    figures.plot_confusion(figures.CONFUSION_FILE, tmp_path / "confusion.png")
    figures.plot_legacy_resize(tmp_path / "resize.png")
    for png in (tmp_path / "curves.png", tmp_path / "confusion.png", tmp_path / "resize.png",
                IMG / "digits_curves.png", IMG / "digits_confusion.png", IMG / "legacy_resize.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png


def test_legacy_resize_picture_shows_what_the_code_does(figures):
    pytest.importorskip("sklearn")
    image = figures.sample_photo()
    height, width = image.shape[:2]
    assert width > height  # a landscape photo: the legacy resize makes it portrait
    steps = figures.resize_steps(image)
    (legacy, legacy_crop), (corrected, corrected_crop) = steps["legacy"], steps["corrected"]
    assert legacy.shape[:2] == (256 * width // height, 256) and corrected.shape[:2] == (256, 256 * width // height)
    assert legacy_crop.shape[:2] == corrected_crop.shape[:2] == (224, 224)
    porting = read("docs/porting.md")
    assert "img/legacy_resize.png" in porting and not missing_numbers(porting, [f"{width}×{height}"])


def test_googlenet_md_run_table_is_the_committed_run(figures, digits_run, googlenet_md):
    assert figures.run_table(digits_run) in googlenet_md, f"the run table of docs/googlenet.md §9 is out of date; {REGENERATE}"


def test_what_googlenet_md_says_about_the_run(digits_run, digits_confusion, googlenet_md):
    """Each number and claim of §9's epoch-by-epoch text, from docs/data/digits_metrics.jsonl."""
    first, third, last = digits_run[0], digits_run[2], digits_run[-1]
    decay = next(r for r in digits_run if r["lr"] < first["lr"])  # the epoch whose last step decays
    after = digits_run[decay["epoch"]]
    best = best_epoch(digits_run)
    before_decay = digits_run[decay["epoch"] - 2]
    seconds, speeds = [r["seconds"] for r in digits_run], [r["img_per_s"] for r in digits_run]
    # The claims behind the words:
    assert abs(first["train_loss"] - 2.3026) < 0.1, "epoch 1 is no longer at chance (ln 10)"
    assert third["train_top1_aux1"] > third["train_top1"], "aux1 no longer leads in epoch 3"
    assert best is last, "the last epoch is no longer the best"
    assert last["train_top1"] > max(last["train_top1_aux1"], last["train_top1_aux2"]), "the main head no longer leads at the end"
    numbers = [
        percent(first["train_top1"]), percent(first["val_top1"]),
        percent(third["train_top1_aux1"]), f"{third['train_loss_aux1']:.2f}", percent(third["train_top1"]),
        f"{third['train_loss']:.2f}", percent(digits_run[1]["val_top1"]), percent(third["val_top1"]),
        percent(before_decay["val_top1"]), percent(decay["val_top1"]),
        f"{decay['lr']:g}", str(decay["epoch"]), str(after["epoch"]),
        f"{decay['train_loss']:.2f}", f"{after['train_loss']:.2f}", percent(after["val_top1"]),
        str(best["epoch"]), percent(best["val_top1"]), f"{best['val_loss']:.3f}", percent(last["val_top5"]),
        percent(last["train_top1"]), percent(last["train_top1_aux1"]), percent(last["train_top1_aux2"]),
        f"{min(seconds):.0f}–{max(seconds):.0f} s", f"{min(speeds):.0f}–{max(speeds):.0f} images/s",
    ]
    matrix, names = digits_confusion
    wrong = int(matrix.sum() - matrix.trace())
    off = matrix.copy()
    off[range(len(off)), range(len(off))] = 0
    i, j = divmod(int(off.argmax()), off.shape[1])
    numbers += [f"{wrong} of the {matrix.sum()}", f"{off[i, j]} images of {names[i]} predicted as {names[j]}"]
    assert not missing_numbers(googlenet_md, numbers)


def test_what_training_md_shows_of_the_run(digits_run):
    """The console lines of docs/training.md's "What you will see" and the messages quoting the run."""
    training = read("docs/training.md")
    best, last = best_epoch(digits_run), digits_run[-1]
    for line in re.findall(r"^epoch (\d+)/(\d+): val loss (\S+) top1 (\S+)% top5 (\S+)% \(best (\S+)%\)", training, re.M):
        record = digits_run[int(line[0]) - 1]
        best_so_far = max(r["val_top1"] for r in digits_run[: int(line[0])])
        assert line[1:] == (str(len(digits_run)), f"{record['val_loss']:.4f}", f"{100 * record['val_top1']:.2f}",
                            f"{100 * record['val_top5']:.2f}", f"{100 * best_so_far:.2f}"), line
    done = f"done: best val top-1 {100 * best['val_top1']:.2f} % at epoch {best['epoch']} of {last['epoch']}"
    held = f"{last['epoch']} of {last['epoch']} epochs done, best val top-1 {100 * best['val_top1']:.2f} %"
    for text in (done, held):
        assert text in training, text
    assert done in read("README.md")


def minutes_and_seconds(seconds):
    seconds = round(seconds)
    return f"{seconds // 60} min {seconds % 60} s"


def span(low, high, number, unit):
    """A range as the docs write it: "3.9–4.0 min", or "98.3 %" when both ends round alike."""
    low, high = format(low, number), format(high, number)
    return f"{low} {unit}" if low == high else f"{low}–{high} {unit}"


def test_quick_start_figures_come_from_the_committed_results(digits_run):
    """README's time and accuracy of the quick start are the range over benchmarks/results/quickstart.json's runs,
    on the machine it names; googlenet.md's run is its first, whose metrics are docs/data/digits_metrics.jsonl."""
    results = json.loads((RESULTS / "quickstart.json").read_text())
    machine, runs = results["machine"], results["runs"]
    assert results["command"] == "python train.py googlenet --dataset digits"
    assert runs[0]["val_top1_by_epoch"] == [r["val_top1"] for r in digits_run], \
        "docs/data/digits_metrics.jsonl is not the first run of benchmarks/results/quickstart.json"
    cpu = f"{machine['cores']}-core {machine['cpu']}"
    minutes = [run["seconds"] / 60 for run in runs]
    top1 = [run["final_val_top1"] for run in runs]
    readme = flat(read("README.md"))
    count = {1: "one run", 2: "two runs", 3: "three runs"}.get(len(runs), f"{len(runs)} runs")
    for claim in (f"{cpu} (Paddle {machine['paddle']})", span(min(minutes), max(minutes), ".1f", "min"), count,
                  span(min(top1) * 100, max(top1) * 100, ".1f", "%")):
        assert claim in readme, f"README.md's quick start should say {claim!r} (benchmarks/results/quickstart.json)"
    googlenet = flat(read("docs/googlenet.md"))
    for claim in (f"{cpu} with Python {machine['python']} and Paddle {machine['paddle']}", minutes_and_seconds(runs[0]["seconds"])):
        assert claim in googlenet, f"docs/googlenet.md §9 should say {claim!r} (benchmarks/results/quickstart.json)"


def test_visualdl_md_disk_figures_come_from_the_committed_results():
    import paddle

    result = json.loads((RESULTS / "vdl_record_size.json").read_text())
    per_epoch, kinds = result["bytes_per_epoch"], result["bytes_per_epoch_by_kind"]
    epochs = DEFAULTS["epochs"]  # the legacy run
    assert kinds["scalar"] < 1000
    with paddle.LazyGuard():
        parameters = count_parameters(get_model("googlenet"))
    numbers = [f"{result['train_images']:,}", str(result["batch"]), str(result["log_interval"]), f"{result['val_images']:,}",
               str(result["classes"]), str(result["epochs"]),
               f"{per_epoch / 1e3:.0f} kB", f"{kinds['image'] / 1e3:.0f} kB", f"{kinds['pr_curve'] / 1e3:.0f} kB",
               f"{epochs}-epoch", f"{per_epoch * epochs / 1e6:.0f} MB", f"{kinds['pr_curve'] * epochs / 1e6:.0f} MB",
               f"{parameters * 8 / 1e6:.0f} MB", f"{parameters:,}"]
    assert not missing_numbers(read("docs/visualdl.md"), numbers)


# The reference runs of docs/training.md: docs/data/digits_recipes.json, docs/data/digits_transfer.json


def last_and_best(records, key="val_top1"):
    return records[-1][key], max(r[key] for r in records)


def test_training_md_transfer_runs_come_from_the_committed_results(figures):
    import math

    training = read("docs/training.md")
    document = figures.read_runs(figures.TRANSFER_FILE)
    runs = document["runs"]
    assert figures.transfer_table(document) in training, f"the fine-tuning table of docs/training.md is out of date; {REGENERATE}"
    for name in ("digits04", "digits59", "digits59-scratch"):
        assert runs[name]["command"] in training, f"docs/training.md should show the command of {name}"
    assert f"({document['machine']})" in flat(training)
    metrics = {name: run["metrics"] for name, run in runs.items()}
    short_pretrained, short_scratch = (last_and_best(metrics[name])[1] for name in ("digits59", "digits59-scratch"))
    assert short_pretrained > short_scratch and short_scratch < 0.25, "the 7-epoch runs no longer tell the story told"
    steps = math.ceil(50 / DATASET_DEFAULTS["digits"]["batch_size"]) * len(metrics["digits59"])
    numbers = [percent(metrics["digits04"][-1]["val_top1"]), f"{steps} steps", percent(short_pretrained), percent(short_scratch)]
    numbers += [percent(last_and_best(metrics[name])[1]) for name in
                ("digits59-30", "digits59-scratch-30", "digits59-30-lr0.001", "digits59-scratch-30-lr0.001")]
    assert not missing_numbers(training, numbers)


def test_training_md_recipe_runs_come_from_the_committed_results(figures):
    training = read("docs/training.md")
    document = figures.read_runs(figures.RECIPES_FILE)
    runs = {name: run["metrics"] for name, run in document["runs"].items()}
    assert figures.recipes_table(document) in training, f"the recipes table of docs/training.md is out of date; {REGENERATE}"
    for name in ("legacy-s1", "options-s1"):
        assert document["runs"][name]["command"] in training, f"docs/training.md should show the command of {name}"
    assert f"({document['machine']})" in flat(training)
    seeds = (0, 1, 2)
    legacy = [runs[f"legacy-s{s}"][-1]["val_top1"] for s in seeds]
    options = [runs[f"options-s{s}"][-1]["val_top1"] for s in seeds]
    ema = [runs[f"options-s{s}"][-1]["val_top1_ema"] for s in seeds]
    gains = [100 * (o - g) for o, g in zip(options, legacy)]
    assert gains[0] < 0 and gains[1] < 0 < gains[2], "the gains per seed no longer have the signs the text gives"
    assert all(e <= o for e, o in zip(ema, options)) and ema[0] == options[0], "the EMA's comparison changed"
    stumbling = runs["legacy-s2"]
    falls = [r["epoch"] for previous, r in zip(stumbling, stumbling[1:]) if r["val_top1"] < previous["val_top1"]]
    third = [[runs[f"{kind}-s{s}"][2]["val_top1"] for s in seeds] for kind in ("options", "legacy")]
    numbers = [f"{-gains[0]:.1f} and {-gains[1]:.1f} points", f"gained {gains[2]:.1f}",
               f"epochs {', '.join(map(str, falls[:-1]))} and {falls[-1]}",
               percent(sum(options) / 3), percent(sum(legacy) / 3),
               f"{100 * (max(legacy) - min(legacy)):.1f} to {100 * (max(options) - min(options)):.1f} points",
               *(f"{100 * min(values):.1f}–{100 * max(values):.1f} %" for values in third),
               f"{runs['legacy-s0'][-1]['global_step']} steps"]
    assert not missing_numbers(training, numbers)
