"""Nothing lost: two runs meeting in one folder, a disk that fills, kills at any moment, torn files, bad numbers.

Every case runs train.py for real (in this process or as real processes) on the tiny dataset.
"""

import json
import os
import resource
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest

from paddle_googlenet.checkpoint import load_checkpoint
from paddle_googlenet.training import main

from helpers import read_metrics, run_main, run_script, start_script, tiny_args, weights


def run(capsys, argv):
    return run_main(main, capsys, argv)


def wait_for_line(proc, prefix, timeout=180):
    """Read ``proc``'s stdout until a line starting with ``prefix``; return the lines read."""
    lines, deadline = [], time.time() + timeout
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(prefix) or time.time() > deadline:
            break
    assert lines and lines[-1].startswith(prefix), "".join(lines)
    return lines


# ------------------------------------------------------------------ one run per folder


@pytest.mark.slow
def test_a_second_run_into_a_folder_in_use_stops_in_one_line_naming_the_first(tiny_lists, tmp_path):
    first = start_script("train.py", *tiny_args(tiny_lists, tmp_path, "--epochs", "50"))
    try:
        wait_for_line(first, "curves:")  # the lock is held from before the first file is written
        for extra in ((), ("--overwrite",), ("--resume", "auto")):
            second = run_script("train.py", *tiny_args(tiny_lists, tmp_path, *extra))
            assert second.returncode == 2, second.stderr
            line = second.stderr.strip().splitlines()[-1]
            assert len(second.stderr.strip().splitlines()) == 1, second.stderr
            assert f"is in use by a training run (PID {first.pid} on " in line and "started 20" in line, line
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=60)
    assert [p.name for p in tmp_path.glob("*.pdckpt")] == [] or load_checkpoint(tmp_path / "latest.pdckpt")
    # the killed run's lock is stale: the next run takes it over, with a notice
    resumed = run_script("train.py", *tiny_args(tiny_lists, tmp_path, "--resume", "auto", epochs=1))
    assert resumed.returncode == 0, resumed.stderr
    assert f"took over {tmp_path / '.lock'} from a training run that ended without releasing it (PID {first.pid}" in resumed.stderr
    assert not (tmp_path / ".lock").exists()


@pytest.mark.slow
def test_two_runs_started_together_never_share_a_folder(tiny_lists, tmp_path):
    procs = [start_script("train.py", *tiny_args(tiny_lists, tmp_path, "--seed", str(seed), epochs=1)) for seed in (0, 7)]
    results = [proc.communicate(timeout=300) for proc in procs]
    codes = sorted(proc.returncode for proc in procs)
    assert codes == [0, 2], results
    refused = results[[proc.returncode for proc in procs].index(2)][1]
    assert "is in use by a training run" in refused or "already holds a googlenet run" in refused, refused
    assert [record["epoch"] for record in read_metrics(tmp_path)] == [1]
    winner = [0, 7][[proc.returncode for proc in procs].index(0)]
    assert json.loads((tmp_path / "args.json").read_text())["seed"] == winner
    assert len(list((tmp_path / "vdl").glob("vdlrecords*"))) == 1


# ------------------------------------------------------------------ full disks and failed writes


def limited_file_size(limit):
    """A ``preexec_fn`` that makes every file write of the child fail past ``limit`` bytes (EFBIG)."""
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_write_that_fails_mid_checkpoint_stops_in_one_line_and_leaves_the_folder_resumable(tiny_lists, tmp_path):
    """Writes fail at a chosen byte (a file-size limit): the run stops with one line, exit 2, and keeps nothing half-written."""
    output = tmp_path / "run"
    result = run_script("train.py", *tiny_args(tiny_lists, output, epochs=1), preexec_fn=limited_file_size(20 * 2**20))
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"train.py: error: cannot write {output / 'epoch_1.pdckpt'}: ") and "--resume auto" in line, result.stderr
    assert "Traceback" not in result.stderr
    assert not list(output.glob("*.pdckpt")) and not list(output.glob(".*.tmp")) and read_metrics(output) == []
    # nothing recorded, nothing to resume: the same command with --resume auto starts afresh
    again = run_script("train.py", *tiny_args(tiny_lists, output, "--resume", "auto", epochs=1))
    assert again.returncode == 0, again.stderr
    assert [record["epoch"] for record in read_metrics(output)] == [1]


def test_a_run_writes_its_files_with_the_permissions_the_umask_allows(tiny_lists, tmp_path):
    """Written through a temporary file and renamed, yet readable by the group as any other file under umask 027."""
    output = tmp_path / "run"
    result = run_script("train.py", *tiny_args(tiny_lists, output, epochs=1), preexec_fn=lambda: os.umask(0o027))
    assert result.returncode == 0, result.stderr
    for name in ("epoch_1.pdckpt", "latest.pdckpt", "args.json", "metrics.jsonl"):
        assert oct((output / name).stat().st_mode & 0o777) == oct(0o640), name


@pytest.fixture
def small_disk(tmp_path):
    """A 120 MB tmpfs (root only): room for one GoogLeNet checkpoint of the tiny run, not two."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=120m", "tmpfs", str(mount)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.root
@pytest.mark.slow
def test_a_full_disk_stops_the_run_after_its_last_checkpoint_and_resume_finishes_it(tiny_lists, small_disk, tmp_path):
    output = small_disk / "run"
    result = run_script("train.py", *tiny_args(tiny_lists, output, "--keep-checkpoints", "2", epochs=3))
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert f"cannot write {output / 'epoch_2.pdckpt'}: the disk is full (about " in line and "MB free)" in line, result.stderr
    assert "free some space, then continue with --resume auto" in line and "Traceback" not in result.stderr
    assert [record["epoch"] for record in read_metrics(output)] == [1]  # every recorded epoch has its checkpoint
    assert load_checkpoint(output / "latest.pdckpt")["train_state"]["epoch"] == 1
    assert not list(output.glob(".*.tmp"))
    subprocess.run(["mount", "-o", "remount,size=400m", str(small_disk)], check=True)  # space freed
    resumed = run_script("train.py", *tiny_args(tiny_lists, output, "--keep-checkpoints", "2", "--resume", "auto", epochs=3))
    assert resumed.returncode == 0, resumed.stderr
    assert [record["epoch"] for record in read_metrics(output)] == [1, 2, 3]


# ------------------------------------------------------------------ kills


def test_partial_files_of_an_interrupted_save_are_removed_by_the_next_run(tiny_lists, tmp_path, capsys):
    assert run(capsys, tiny_args(tiny_lists, tmp_path, epochs=1))[0] == 0
    partial = tmp_path / ".epoch_2.pdckpt.k3x9q1.tmp"  # what a SIGKILL inside a save leaves
    partial.write_bytes(b"\0" * 1000)
    assert run(capsys, tiny_args(tiny_lists, tmp_path, "--resume", "auto", epochs=2))[0] == 0
    assert not partial.exists()
    partial.write_bytes(b"\0" * 1000)
    assert run(capsys, tiny_args(tiny_lists, tmp_path, "--overwrite", epochs=1))[0] == 0
    assert not partial.exists()


@pytest.mark.slow
def test_a_run_killed_before_its_first_checkpoint_starts_afresh_with_a_notice(tiny_lists, tmp_path):
    proc = start_script("train.py", *tiny_args(tiny_lists, tmp_path, "--log-interval", "1", epochs=3))
    wait_for_line(proc, "epoch 1/3 step 1/3")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert not list(tmp_path.glob("*.pdckpt")) and (tmp_path / "args.json").exists()
    for extra in (("--resume", "auto"), ()):  # the same command, with or without --resume auto
        result = run_script("train.py", *tiny_args(tiny_lists, tmp_path, *extra, epochs=1))
        assert result.returncode == 0, result.stderr
        if extra:
            assert "ended before its first checkpoint (nothing to resume); starting afresh" in result.stderr
            shutil.rmtree(tmp_path / "vdl"), [path.unlink() for path in tmp_path.glob("*") if path.is_file()]
    assert [record["epoch"] for record in read_metrics(tmp_path)] == [1]


@pytest.mark.slow
def test_killed_at_random_moments_and_resumed_each_time_ends_with_the_uninterrupted_weights(tiny_lists, tmp_path):
    """SIGKILL at random moments (in steps, evaluations and checkpoint saves), `--resume auto` after each."""
    straight, epochs = tmp_path / "straight", 6
    started = time.monotonic()
    assert run_script("train.py", *tiny_args(tiny_lists, straight, epochs=epochs)).returncode == 0
    whole = time.monotonic() - started  # kill times relative to it: the same test on a slower machine
    output, rng, kills = tmp_path / "killed", np.random.default_rng(3), 0
    command = tiny_args(tiny_lists, output, "--resume", "auto", epochs=epochs)
    for _ in range(40):
        proc = start_script("train.py", *command)
        try:
            proc.communicate(timeout=float(rng.uniform(0.3, 0.8)) * whole)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            kills += 1
            continue
        assert proc.returncode == 0
        break
    assert kills >= 2, "the run ended before it was killed twice"
    assert [record["epoch"] for record in read_metrics(output)] == list(range(1, epochs + 1))
    expected, got = weights(load_checkpoint(straight / "latest.pdckpt")), weights(load_checkpoint(output / "latest.pdckpt"))
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


# ------------------------------------------------------------------ torn checkpoints


def test_resume_auto_with_a_torn_latest_continues_from_the_newest_readable_epoch(tiny_lists, tmp_path, capsys):
    assert run(capsys, tiny_args(tiny_lists, tmp_path, "--keep-checkpoints", "2", epochs=2))[0] == 0
    latest = tmp_path / "latest.pdckpt"
    torn = latest.read_bytes()[: latest.stat().st_size // 2]
    latest.unlink()  # latest is a hard link to epoch_2: a torn file is a new one
    latest.write_bytes(torn)
    code, out, err = run(capsys, tiny_args(tiny_lists, tmp_path, "--keep-checkpoints", "2", "--resume", "auto", epochs=3))
    assert code == 0, err
    assert f"{latest}: not a readable checkpoint" in err and f"resuming from {tmp_path / 'epoch_2.pdckpt'} instead" in err
    assert [record["epoch"] for record in read_metrics(tmp_path)] == [1, 2, 3]
    # an explicit resume of the newest readable epoch is accepted too: no two messages pointing at each other
    latest.unlink()
    latest.write_bytes(torn)
    code, _, err = run(capsys, tiny_args(tiny_lists, tmp_path, "--keep-checkpoints", "2", "--resume", tmp_path / "epoch_3.pdckpt", epochs=4))
    assert code == 0, err


def test_a_metrics_record_lost_to_a_kill_after_its_checkpoint_is_written_back(tiny_lists, tmp_path, capsys):
    assert run(capsys, tiny_args(tiny_lists, tmp_path, epochs=2))[0] == 0
    records = read_metrics(tmp_path)
    (tmp_path / "metrics.jsonl").write_text(json.dumps(records[0]) + "\n")  # killed between the checkpoint and the record
    assert run(capsys, tiny_args(tiny_lists, tmp_path, "--resume", "auto", epochs=3))[0] == 0
    restored = read_metrics(tmp_path)
    assert [record["epoch"] for record in restored] == [1, 2, 3] and restored[1] == records[1]


# ------------------------------------------------------------------ numbers


@pytest.mark.parametrize("flags, message", [
    (("--dropout", "1.5"), "argument --dropout: must lie in [0, 1), got 1.5"),
    (("--lr", "-1"), "argument --lr: must be positive, got -1"),
    (("--lr", "0"), "argument --lr: must be positive, got 0"),
    (("--workers", "-1"), "argument --workers: must be at least 0, got -1"),
    (("--momentum", "1.5"), "argument --momentum: must lie in [0, 1), got 1.5"),
    (("--weight-decay", "-1"), "argument --weight-decay: must be at least 0, got -1"),
    (("--aux-weight", "-1"), "argument --aux-weight: must be at least 0, got -1"),
    (("--lr-decay-rate", "0"), "argument --lr-decay-rate: must lie in (0, 1], got 0"),
    (("--lr", "nan"), "argument --lr: expected a finite number, got 'nan'"),
    (("--warmup-epochs", "3"), "--warmup-epochs 3 is longer than the run (--epochs 1)"),
    (("--aux-dropout", "0.5"), "--aux-dropout is for googlenet"),
])
def test_a_bad_number_is_one_line_and_writes_nothing(tiny_lists, tmp_path, flags, message, capsys):
    model = "alexnet" if "--aux-dropout" in flags else "googlenet"
    code, out, err = run(capsys, tiny_args(tiny_lists, tmp_path / "out", *flags, model=model, epochs=1))
    assert code == 2 and out == ""
    assert err.startswith(f"train.py: error: {message}") and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_the_command_corrected_after_a_failed_start_runs(tiny_lists, tmp_path, capsys):
    """A start that fails after its checks (here: its pretrained weights) leaves nothing that blocks the corrected command."""
    broken = tmp_path / "weights.pdparams"
    broken.write_bytes(b"not weights")
    code, _, err = run(capsys, tiny_args(tiny_lists, tmp_path / "out", "--pretrained", broken, epochs=1))
    assert code == 2 and err.count("\n") == 1 and "weights.pdparams" in err, err
    assert not (tmp_path / "out").exists()
    assert run(capsys, tiny_args(tiny_lists, tmp_path / "out", epochs=1))[0] == 0


# ------------------------------------------------------------------ class names of any kind


def write_class_folders(root, names, per_class=3):
    """``root/{train,val}/<name>/*.png`` for class folder names given as bytes (any encoding)."""
    import cv2

    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("val", 1)):
        for label, name in enumerate(names):
            folder = os.path.join(os.fsencode(root), split.encode(), name)
            os.makedirs(folder)
            for index in range(count):
                image = rng.integers(0, 60, (72, 72, 3)).astype(np.uint8)
                image[18:54, 18:54, label % 3] = 220
                with open(os.path.join(folder, b"%d.png" % index), "wb") as stream:
                    stream.write(cv2.imencode(".png", image)[1].tobytes())


def test_class_names_that_are_not_utf8_or_not_in_the_font_train_and_chart(tmp_path, capsys):
    names = [b"caf\xe9", "玫瑰".encode(), b"plain"]  # a Latin-1 folder name, Chinese, ASCII
    write_class_folders(tmp_path / "photos", names)
    argv = ["googlenet", "--dataset", "folder", "--data-dir", tmp_path / "photos", "--image-size", "64", "--batch-size", "3",
            "--epochs", "1", "--workers", "0", "--output", tmp_path / "out"]
    code, out, err = run(capsys, argv)
    assert code == 0, err
    assert "Glyph" not in err and "Traceback" not in err and "warning" not in err.lower(), err
    state = load_checkpoint(tmp_path / "out" / "latest.pdckpt")
    assert [os.fsencode(name) for name in state["class_names"]] == sorted(names)  # the real names are kept
    code, out, err = run(capsys, [*argv[:-2], "--eval-only", tmp_path / "out" / "latest.pdckpt"])
    assert code == 0, err
    reports = tmp_path / "out" / "eval-latest"
    per_class = json.loads((reports / "per_class.json").read_bytes().decode("utf-8"))  # valid UTF-8 JSON
    assert sorted(os.fsencode(row["name"]) for row in per_class) == sorted(names)
    assert (reports / "confusion.png").stat().st_size > 0
