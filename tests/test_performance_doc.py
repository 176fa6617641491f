"""docs/performance.md shows the committed results, and nothing else.

* Every results file the page cites exists, and every file in benchmarks/results/ is cited by the docs
  (docs/*.md or benchmarks/README.md): lab runs go to benchmarks/NOTES.md as numbers.
* Each section has a run table (result file, CPU, threads, load at start) whose values are the JSON's
  (a file that records no CPU or start load must say "not recorded"), with no load above 1.5; every
  number of every other table equals the value computed here from the JSON, at the rounding the page
  shows, and every number shown is checked.
* Each command in a ```bash block of the page (and of benchmarks/README.md) names a script of this
  repository and parses with that script's own argument parser; the command a JSON file records is
  the one its section shows.
* The page stays short (at most 210 lines) and states no targets.
"""

import argparse
import json
import re
import shlex
import statistics
import sys
from pathlib import Path
from unittest import mock

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "performance.md"
RESULTS = REPO / "benchmarks" / "results"
BENCHMARKS_README = REPO / "benchmarks" / "README.md"
MAX_LOAD = 1.5
MAX_LINES = 210

TRAINING = "Training speed: GoogLeNet at 224×224"
EPOCH = "An epoch of train.py"
QUICK_START = "The quick start"
INFERENCE = "Inference engines on the CPU"
INT8 = "int8 accuracy"
DATA = "Data loading"
THREADS = "Threads, MKL's kernels and the memory allocator"
SECTIONS = (TRAINING, EPOCH, QUICK_START, INFERENCE, INT8, DATA, THREADS)  # other docs link to these headings


# Reading the page ---------------------------------------------------------------------------------


def page_text():
    return PAGE.read_text(encoding="utf-8")


def sections():
    """``{heading: body}`` of the page's ``## `` sections."""
    found, title, lines = {}, None, []
    for line in page_text().splitlines():
        if line.startswith("## "):
            if title is not None:
                found[title] = "\n".join(lines)
            title, lines = line[3:].strip(), []
        else:
            lines.append(line)
    if title is not None:
        found[title] = "\n".join(lines)
    return found


def plain(text):
    """A cell or heading without Markdown emphasis and code marks."""
    return " ".join(text.replace("**", "").replace("`", "").split())


def split_row(line):
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def tables(body):
    """The Markdown tables of ``body``: ``(header cells, rows of cells)`` each."""
    found, block = [], []
    for line in body.splitlines() + [""]:
        if line.startswith("|"):
            block.append(line)
        elif block:
            found.append((split_row(block[0]), [split_row(row) for row in block[2:]]))
            block = []
    return found


def is_run_table(table):
    return plain(table[0][0]) == "result file"


NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?(?:e-?\d+)?")


def numbers(cell):
    """The numbers a cell shows, as written (code spans such as `loader/2` are names, not numbers)."""
    return NUMBER.findall(re.sub(r"`[^`]*`", "", cell))


def agrees(shown, value):
    """Whether ``value`` rounds to the number ``shown`` at the precision it is shown with."""
    text = shown.replace(",", "")
    if "e" in text:
        mantissa = text.split("e")[0]
        digits = len(mantissa.split(".")[1]) if "." in mantissa else 0
        return float(format(value, f".{digits}e")) == float(text)
    digits = len(text.split(".")[1]) if "." in text else 0
    rounded = format(value, f".{digits}f")
    return rounded == text or float(rounded) == float(text) == 0  # -0.00 shown as 0.00


# The results -------------------------------------------------------------------------------------


def load(name):
    return json.loads((RESULTS / name).read_text(encoding="utf-8"))


def one_minute(value):
    return value[0] if isinstance(value, list) else value


def loads_at_start(data):
    """The 1-minute load averages at the start of the runs a results file holds (one per run), or None if unrecorded."""
    if "runs" in data:
        return [one_minute(run["load_average_at_start"]) for run in data["runs"]]
    value = data.get("machine", {}).get("load_average_at_start", data.get("load_average_at_start"))
    return None if value is None else [one_minute(value)]


def run_facts(data):
    """``(CPU model or None, threads, loads at start or None)`` of a results file."""
    machine = data.get("machine", {})
    threads = machine.get("threads") or data.get("threads") or machine.get("usable_cores") or machine.get("cores") or data.get("cpus")
    return machine.get("cpu") or data.get("cpu"), int(threads), loads_at_start(data)


def speed_records(name, kind="train"):
    return {record["path"]: record for record in load(name)["records"] if record["kind"] == kind}


def paired(record, reference):
    """The median of the per-trial ratios of two paths of one run."""
    return statistics.median(a / b for a, b in zip(record["img_s_trials"], reference["img_s_trials"]))


def variant_rounds(name):
    """``{(path, variant): img/s per round}`` of a ``bench_speed.py variants`` file."""
    return {(record["path"], record["variant"]): record["img_s_rounds"] for record in load(name)["records"]}


def per_round(values, reference):
    return statistics.median(a / b for a, b in zip(values, reference))


# What each section's figures tables must show: (result files, [expected rows of each table, in order]).
# Expected rows: {row label: {column header: number, (numbers, ...), text, or None (no number shown)}}.


def training():
    records = speed_records("speed_googlenet.json")
    return ["speed_googlenet.json"], [{
        path: {"train img/s, median (best)": (r["img_s_median"], r["img_s_best"]), "× paddle.vision, paired": r["ratio_to_vision"]}
        for path, r in records.items()
    }]


def epoch():
    data = load("epoch.json")
    medians, ratios = data["median_img_per_s"], data["median_ratios"]
    return ["epoch.json"], [{
        "train.py, one epoch": {"img/s, median": medians["train.py"], "train.py ÷ it, median per round": None},
        "bare loop, paddle.vision": {"img/s, median": medians["vision"], "train.py ÷ it, median per round": ratios["train.py / vision"]},
        "bare loop, ours": {"img/s, median": medians["ours"], "train.py ÷ it, median per round": ratios["train.py / ours"]},
    }]


def quick_start():
    runs = {}
    for label, run in zip(("first run", "second run", "third run"), load("quickstart.json")["runs"]):
        runs[label] = {"wall time": run["seconds"], "validation top-1, final": 100 * run["final_val_top1"],
                       "best (epoch)": (100 * run["best_val_top1"], run["best_epoch"]),
                       "training img/s per epoch": (min(run["img_per_s_by_epoch"]), max(run["img_per_s_by_epoch"]))}
    steps = {}
    for label, name in (("one process, 2 threads", "speed_quickstart.json"), ("--nproc 2, 1 thread each", "speed_quickstart_nproc2.json")):
        records = speed_records(name)
        ours, plain_layers = records["ours"], records["ours-plain"]
        steps[label] = {"ours img/s, median (best)": (ours["img_s_median"], ours["img_s_best"]),
                        "ours-plain img/s, median (best)": (plain_layers["img_s_median"], plain_layers["img_s_best"]),
                        "ours ÷ ours-plain, paired": paired(ours, plain_layers)}
    return ["quickstart.json", "speed_quickstart.json", "speed_quickstart_nproc2.json"], [runs, steps]


ENGINES = {
    "dygraph (the baseline)": "dygraph fp32",
    "Paddle Inference fp32": "inference fp32 oneDNN",
    "Paddle Inference int8": "inference int8 oneDNN",
    "ONNX Runtime fp32": "onnxruntime fp32",
    "OpenVINO fp32": "openvino fp32",
}


def inference():
    photos, noise = load("inference.json"), load("inference_random_input.json")
    assert photos["input"]["kind"] == "photos" and noise["input"]["kind"] == "random"
    assert photos["batch_size"] == noise["batch_size"] == 32
    rows = {}
    for label, name in ENGINES.items():
        if name not in photos["engines"]:
            continue
        engine, agreement = photos["engines"][name], photos["agreement_with_dygraph"][name]
        rows[label] = {
            "version": engine["version"].split()[-1].split("-")[0],  # openvino 2026.4.1-22982-...: 2026.4.1
            "img/s, batch 32": engine["median_img_per_s"],
            "latency, 1 image": engine["median_latency_ms"],
            "× Paddle Inference fp32": engine["ratio_to_inference_fp32_median_per_round"],
            "same top-1 as dygraph": 100 * agreement["top1_agreement"],
            "largest probability difference": agreement["max_abs_prob_diff"],
            "× Paddle Inference fp32, random input": noise["engines"][name]["ratio_to_inference_fp32_median_per_round"],
        }
    return ["inference.json", "inference_random_input.json"], [rows]


INT8_ROWS = {"checkpoint, dygraph fp32": "checkpoint (dygraph fp32)", "export, oneDNN fp32": "export fp32 oneDNN",
             **{f"export, oneDNN int8, {algo}": f"export int8 oneDNN ({algo})" for algo in ("hist", "abs_max", "avg", "mse")}}


def int8():
    results = load("int8_accuracy.json")["results"]
    rows = {}
    for label, name in INT8_ROWS.items():
        if name in results:
            result = results[name]
            rows[label] = {"top-1": 100 * result["top1"], "same top-1 as the checkpoint": 100 * result["top1_agreement_with_checkpoint"],
                           "largest probability difference": result["max_abs_prob_diff"], "export time": result.get("export_seconds")}
    return ["int8_accuracy.json"], [rows]


DATA_ROWS = {"decode, OpenCV (the loader's)": "decode", "decode, Pillow (comparison)": "decode/pillow",
             "loader, 0 workers": "loader/0", "loader, 2 workers": "loader/2"}


def data_loading():
    stages = {row["stage"]: row for row in load("data.json")["results"]}
    return ["data.json"], [{
        label: {"img/s, median (best)": (stages[stage]["median"], stages[stage]["best"]), "CPU ms per image": stages[stage]["cpu_ms_per_image"]}
        for label, stage in DATA_ROWS.items()
    }]


def threads():
    kernels, malloc = variant_rounds("speed_mkl_kernels.json"), variant_rounds("speed_malloc.json")
    rows = {path: {"MKL's own kernels, img/s": statistics.median(kernels[path, "mkl-generic"]),
                   "AVX2 kernels, img/s": statistics.median(kernels[path, "mkl-only"]),
                   "AVX2 ÷ own, per round": per_round(kernels[path, "mkl-only"], kernels[path, "mkl-generic"]),
                   "glibc's defaults, img/s": statistics.median(malloc[path, "mkl-only"]),
                   "freed memory kept, img/s": statistics.median(malloc[path, "heap-malloc"]),
                   "kept ÷ defaults, per round": per_round(malloc[path, "heap-malloc"], malloc[path, "mkl-only"])}
            for path in ("ours", "vision")}
    return ["speed_mkl_kernels.json", "speed_malloc.json"], [rows]


EXPECTED = {TRAINING: training, EPOCH: epoch, QUICK_START: quick_start, INFERENCE: inference, INT8: int8, DATA: data_loading,
            THREADS: threads}


# Tests: the page and the results ------------------------------------------------------------------


def cited_files(text):
    return set(re.findall(r"results/([\w.-]+\.json)", text))


def test_the_page_has_every_section_other_docs_link_to():
    assert set(SECTIONS) <= set(sections()), f"missing sections: {set(SECTIONS) - set(sections())}"


def test_every_cited_results_file_exists():
    missing = sorted(name for name in cited_files(page_text()) if not (RESULTS / name).is_file())
    assert not missing, f"docs/performance.md cites results files that are not committed: {missing}"


def test_every_results_file_is_cited():
    texts = [doc.read_text(encoding="utf-8") for doc in sorted((REPO / "docs").glob("*.md"))] + [BENCHMARKS_README.read_text(encoding="utf-8")]
    uncited = sorted(path.name for path in RESULTS.iterdir() if not any(path.name in text for text in texts))
    assert not uncited, (f"files in benchmarks/results/ no doc cites: {uncited}; delete them (their numbers belong in "
                         "benchmarks/NOTES.md) or cite them")


@pytest.mark.parametrize("title", SECTIONS)
def test_run_table_is_the_machine_and_load_of_each_results_file(title):
    body = sections()[title]
    run_tables = [table for table in tables(body) if is_run_table(table)]
    assert len(run_tables) == 1, f"{title}: expected one run table (result file | CPU | threads | load at start)"
    header, rows = run_tables[0]
    assert [plain(cell) for cell in header] == ["result file", "CPU", "threads", "load at start"], header
    files, _ = EXPECTED[title]()
    shown = []
    for row in rows:
        (name,) = cited_files(row[0]) or {None}
        assert name, f"{title}: a run table row names no results file: {row}"
        shown.append(name)
        data = load(name)
        cpu, threads, loads = run_facts(data)
        where = f"{title}, {name}"
        if cpu is None:
            assert plain(row[1]).startswith("not recorded"), f"{where}: the JSON records no CPU model, the page says {row[1]!r}"
        else:
            assert plain(row[1]) == cpu, f"{where}: CPU {row[1]!r}, the JSON says {cpu!r}"
        assert numbers(row[2])[:1] == [str(threads)], f"{where}: threads {row[2]!r}, the JSON says {threads}"
        if loads is None:  # only the load at the end is recorded: say so, and show that one
            assert plain(row[3]).startswith("not recorded") and "at the end" in row[3], f"{where}: no load at start recorded"
            loads = [one_minute(data.get("load_average", data.get("machine", {}).get("load_average")))]
        shown_loads = numbers(row[3])
        assert len(shown_loads) == len(loads), f"{where}: loads {row[3]!r}, the JSON says {loads}"
        for number, value in zip(shown_loads, loads):
            assert agrees(number, value), f"{where}: load {number}, the JSON says {value}"
            assert value <= MAX_LOAD, f"{where}: measured at a load of {value}, above {MAX_LOAD}: not for publication"
    assert sorted(shown) == sorted(files), f"{title}: the run table lists {shown}, the figures come from {files}"


@pytest.mark.parametrize("title", SECTIONS)
def test_every_number_in_a_table_is_the_results_file_s(title):
    figures = [table for table in tables(sections()[title]) if not is_run_table(table)]
    _, expected_tables = EXPECTED[title]()
    assert len(figures) == len(expected_tables), f"{title}: {len(figures)} figures tables, expected {len(expected_tables)}"
    for (header, rows), expected in zip(figures, expected_tables):
        columns = [plain(cell) for cell in header]
        labels = [plain(row[0]) for row in rows]
        assert sorted(labels) == sorted(expected), f"{title}: rows {labels}, the results give {sorted(expected)}"
        for label, row in zip(labels, rows):
            assert len(row) == len(columns), f"{title}, {label}: {len(row)} cells for {len(columns)} columns"
            for column, cell in zip(columns[1:], row[1:]):
                assert column in expected[label], f"{title}: unknown column {column!r} (known: {sorted(expected[label])})"
                want, shown = expected[label][column], numbers(cell)
                where = f"{title}, row {label!r}, column {column!r}: {cell!r}"
                if want is None:
                    assert not shown, f"{where}: no results file gives these numbers"
                elif isinstance(want, str):
                    assert plain(cell) == want, f"{where}: the results file says {want!r}"
                else:
                    values = want if isinstance(want, tuple) else (want,)
                    assert len(shown) == len(values), f"{where}: expected {len(values)} number(s)"
                    for number, value in zip(shown, values):
                        assert agrees(number, value), f"{where}: {number} is not {value} at that rounding"


def test_the_page_is_short_and_states_no_targets():
    text = page_text()
    assert len(text.splitlines()) <= MAX_LINES, f"docs/performance.md has {len(text.splitlines())} lines (at most {MAX_LINES})"
    assert not re.search(r"\btargets?\b|\bis met\b", text, re.IGNORECASE), "targets and their history belong in benchmarks/NOTES.md"


# Tests: the commands -----------------------------------------------------------------------------


def bash_commands(text):
    """``(line, words)`` of each command in the ```bash blocks of ``text`` (continuations joined, comments dropped)."""
    inside = False
    for line in text.replace("\\\n", " ").splitlines():
        if line.strip().startswith("```"):
            inside = not inside and line.strip()[3:].strip() in ("bash", "sh")
            continue
        command = re.split(r"(?:^|\s)#", line)[0].strip()
        if inside and command:
            words = shlex.split(command)
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # VARIABLE=value before the command
                words.pop(0)
            yield command, words


class _Parsed(Exception):
    pass


def parser_built_by(main):
    """The ArgumentParser ``main`` builds, caught when it parses (for scripts without ``get_args_parser``)."""
    caught = {}

    def catch(parser, *args, **kwargs):
        caught["parser"] = parser
        raise _Parsed

    with mock.patch.object(argparse.ArgumentParser, "parse_args", catch):
        with pytest.raises(_Parsed):
            main([])
    return caught["parser"]


def script_module(name):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


def parser_of(script):
    if script == "train.py":
        from paddle_googlenet.options import get_args_parser

        return get_args_parser()
    name = Path(script).stem
    module = script_module(name)
    return module.get_args_parser() if hasattr(module, "get_args_parser") else parser_built_by(module.main)


def check_command(where, line, words):
    assert words[:1] == ["python"], f"{where}: `{line}` is not a python command"
    script = words[1]
    assert (REPO / script).is_file(), f"{where}: `{line}` names {script}, which is not in this repository"
    assert script == "train.py" or script.startswith("benchmarks/"), f"{where}: `{line}`: no parser known for {script}"
    try:
        args = parser_of(script).parse_args(words[2:])
    except SystemExit as exc:
        pytest.fail(f"{where}: `{line}` does not parse with {script}'s arguments ({exc})")
    if script.endswith("bench_speed.py") and args.paths:  # bench_speed.py checks them after parsing
        known = script_module("bench_speed").PATHS
        assert set(args.paths) <= set(known), f"{where}: `{line}`: unknown paths {set(args.paths) - set(known)}"


@pytest.mark.parametrize("doc", [PAGE, BENCHMARKS_README], ids=lambda path: path.relative_to(REPO).as_posix())
def test_every_bash_command_parses_with_its_script(doc, capsys):
    commands = list(bash_commands(doc.read_text(encoding="utf-8")))
    assert commands, f"no ```bash commands in {doc}"
    for line, words in commands:
        check_command(doc.name, line, words)


def recorded_command(data):
    """The command a results file records, as it is shown (``python benchmarks/...``), or None."""
    command = data.get("command")
    if not command:
        return None
    command = re.sub(r"\S*/(benchmarks/results/)", r"\1", command)  # an absolute path to the committed file
    if command.startswith("python "):
        return command
    return "python " + ("benchmarks/" if command.startswith("bench_") else "") + command


@pytest.mark.parametrize("title", SECTIONS)
def test_each_section_shows_the_command_its_results_file_records(title):
    shown = [line for line, _ in bash_commands(sections()[title])]
    assert shown, f"{title}: no ```bash command"
    files, _ = EXPECTED[title]()
    for name in files:
        command = recorded_command(load(name))
        if command:
            assert command in shown, f"{title}: {name} was made by `{command}`, which the section does not show"
