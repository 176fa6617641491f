"""VisualDL logging: tags and steps read back with VisualDL's own reader and server, across resumes."""

import collections
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest

visualdl = pytest.importorskip("visualdl")
from PIL import Image  # noqa: E402
from visualdl import LogReader, LogWriter  # noqa: E402

from paddle_googlenet import vdl, vdl_records  # noqa: E402
from paddle_googlenet.reports import confusion_matrix, per_class_top1  # noqa: E402
from paddle_googlenet.vdl import TrainingLogger  # noqa: E402


def loss_at(step, process):
    """A distinct value per (step, process) so a point from the wrong process is caught."""
    return 10.0 * process + 1.0 / step


def log_losses(logger, steps, process):
    for step in steps:
        logger.log_scalars(step, {"train/loss": loss_at(step, process), "train/lr": 0.01})


def assert_curve(logdir, tag, expected_points):
    points = vdl.read_scalars(logdir)[tag]
    assert [step for step, _ in points] == [step for step, _ in expected_points]
    np.testing.assert_allclose([v for _, v in points], [v for _, v in expected_points], rtol=1e-6)


def kill_after_logging(logdir, steps):
    """Log ``steps`` in a child process that is then SIGKILLed (no close, no atexit)."""
    script = textwrap.dedent(f"""
        import os, signal
        from paddle_googlenet.vdl import TrainingLogger
        logger = TrainingLogger({str(logdir)!r})
        logger.log_hparams({{"model": "googlenet"}}, {{"val_top1": 0.5}})
        for step in {list(steps)!r}:
            logger.log_scalars(step, {{"train/loss": 10.0 + 1.0 / step, "train/lr": 0.01}})  # loss_at(step, 1)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == -signal.SIGKILL, result.stderr


def test_open_command_names_logdir_and_port():
    assert vdl.open_command("out/run1/vdl") == "visualdl --logdir out/run1/vdl --port 8040"
    assert vdl.open_command("my runs", port=9000) == "visualdl --logdir 'my runs' --port 9000"


def test_scalars_read_back_with_visualdl_reader(tmp_path):
    with TrainingLogger(tmp_path) as logger:
        log_losses(logger, range(1, 6), process=0)
        logger.log_scalars(5, {"val/loss": 1.5, "val/top1": 0.25, "val/top5": 0.75})
    assert_curve(tmp_path, "train/loss", [(s, loss_at(s, 0)) for s in range(1, 6)])
    assert_curve(tmp_path, "val/top1", [(5, 0.25)])
    reader = LogReader(file_path=vdl.displayed_record_file(tmp_path))
    assert set(reader.get_tags()["scalar"]) == {"train/loss", "train/lr", "val/loss", "val/top1", "val/top5"}


def test_disabled_logger_touches_no_file(tmp_path):
    logdir = tmp_path / "vdl"
    logger = TrainingLogger(logdir, enabled=False, resume_step=3)
    logger.log_scalars(1, {"train/loss": 1.0})
    logger.log_images("train/images", [np.zeros((4, 4, 3), np.uint8)], 1)
    logger.log_per_class(1, np.eye(2), np.array([0, 1]), ["a", "b"])
    logger.log_hparams({"lr": 0.1}, {"val_top1": 1.0})
    logger.close()
    assert not logdir.exists()
    assert logger.file_path is None


def test_resume_after_kill_continues_curve_without_duplicates(tmp_path):
    kill_after_logging(tmp_path, range(1, 31))
    killed_file = vdl.displayed_record_file(tmp_path)
    with pytest.warns(UserWarning, match="incomplete"):  # a kill can cut the last record short
        with open(killed_file, "ab") as stream:
            stream.write(b"\x40\x00\x00\x00\x00\x00\x00\x00partial")
        logger = TrainingLogger(tmp_path, resume_step=20)
    log_losses(logger, range(21, 41), process=2)
    logger.close()

    expected = [(s, loss_at(s, 1)) for s in range(1, 21)] + [(s, loss_at(s, 2)) for s in range(21, 41)]
    assert_curve(tmp_path, "train/loss", expected)
    assert [s for s, _ in vdl.read_scalars(tmp_path)["train/lr"]] == list(range(1, 41))
    assert os.path.getsize(killed_file) == 0  # emptied, kept for servers already reading it
    assert logger.file_path != killed_file
    reader = LogReader(file_path=logger.file_path)
    assert "hyper_parameters" not in reader.get_tags()  # the killed process's run summary is gone
    assert not any(tag.startswith("whole_run/") for tag in reader.get_tags()["scalar"])


def test_clean_resume_appends_to_the_same_file(tmp_path):
    with TrainingLogger(tmp_path) as logger:
        log_losses(logger, range(1, 11), process=0)
        first_file = logger.file_path
    with TrainingLogger(tmp_path, resume_step=10) as logger:
        log_losses(logger, range(11, 16), process=1)
        assert logger.file_path == first_file
    expected = [(s, loss_at(s, 0)) for s in range(1, 11)] + [(s, loss_at(s, 1)) for s in range(11, 16)]
    assert_curve(tmp_path, "train/loss", expected)


def test_repeated_resumes_keep_one_displayed_curve(tmp_path):
    logger = TrainingLogger(tmp_path)
    log_losses(logger, range(1, 9), process=0)  # dropped without close, as a crash would
    for process, (resume_step, last_step) in enumerate([(5, 12), (9, 14), (14, 20)], start=1):
        logger = TrainingLogger(tmp_path, resume_step=resume_step)
        log_losses(logger, range(resume_step + 1, last_step + 1), process)
    logger.close()
    expected = ([(s, loss_at(s, 0)) for s in range(1, 6)] + [(s, loss_at(s, 1)) for s in range(6, 10)]
                + [(s, loss_at(s, 2)) for s in range(10, 15)] + [(s, loss_at(s, 3)) for s in range(15, 21)])
    assert_curve(tmp_path, "train/loss", expected)
    reader = LogReader(logdir=str(tmp_path))  # the logdir view the server uses: one file per run
    assert reader.logs(update=True) == {str(tmp_path): os.path.basename(logger.file_path)}


def test_fresh_run_in_a_used_logdir_is_the_one_displayed(tmp_path):
    with TrainingLogger(tmp_path) as logger:  # same second: VisualDL's own name would collide
        log_losses(logger, range(1, 4), process=0)
    with TrainingLogger(tmp_path) as logger:
        log_losses(logger, range(1, 3), process=1)
    assert vdl.displayed_record_file(tmp_path) == logger.file_path
    assert_curve(tmp_path, "train/loss", [(s, loss_at(s, 1)) for s in range(1, 3)])


def test_hparams_with_final_metrics(tmp_path):
    with TrainingLogger(tmp_path) as logger:
        log_losses(logger, range(1, 8), process=0)
        logger.log_hparams(
            {"model": "googlenet", "lr": 0.01, "batch_size": np.int64(32), "aux": 0.3, "pretrained": False},
            {"val_top1": 0.625, "val_top5": 0.875},
        )
    reader = LogReader(file_path=logger.file_path)
    (record,) = reader.get_data("hyper_parameters", "hparam")
    infos = {info.name: getattr(info, info.WhichOneof("type")) for info in record.hparam.hparamInfos}
    assert infos == {"model": "googlenet", "lr": 0.01, "batch_size": 32, "aux": 0.3, "pretrained": "False"}
    assert [info.name for info in record.hparam.metricInfos] == ["whole_run/val_top1", "whole_run/val_top5"]
    assert_curve(tmp_path, "whole_run/val_top1", [(7, 0.625)])


def test_per_class_view(tmp_path):
    rng = np.random.default_rng(0)
    class_names = ["pink primrose", "globe-thistle", "bird of paradise"]
    labels = np.array([0, 0, 1, 1, 2, 2, 2])
    probs = rng.dirichlet(np.ones(3), size=len(labels))
    probs[[0, 2, 4]] = [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]]
    with TrainingLogger(tmp_path) as logger:
        logger.log_per_class(40, probs, labels, class_names)
    reader = LogReader(file_path=logger.file_path)
    tags = reader.get_tags()
    assert tags["image"] == [vdl.PER_CLASS_TOP1_TAG]
    assert tags["pr_curve"] == ["val_pr/all_classes", "val_pr_class/000_pink_primrose",
                                "val_pr_class/001_globe_thistle", "val_pr_class/002_bird_of_paradise"]
    (curve,) = reader.get_data("pr_curve", "val_pr_class/001_globe_thistle")
    assert curve.id == 40
    buckets = np.floor(probs * (vdl.PR_CURVE_THRESHOLDS - 1))
    thresholds = range(vdl.PR_CURVE_THRESHOLDS)
    assert list(curve.pr_curve.TP) == [np.sum((labels == 1) & (buckets[:, 1] >= k)) for k in thresholds]
    assert curve.pr_curve.TP[0] + curve.pr_curve.FN[0] == 2
    assert curve.pr_curve.TP[0] + curve.pr_curve.FP[0] == len(labels)
    (pooled,) = reader.get_data("pr_curve", "val_pr/all_classes")
    is_label = labels[:, None] == np.arange(3)
    assert list(pooled.pr_curve.TP) == [np.sum(is_label & (buckets >= k)) for k in thresholds]
    assert pooled.pr_curve.TP[0] + pooled.pr_curve.FP[0] == probs.size


def test_per_class_top1():
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.6, 0.4, 0.0], [0.3, 0.7, 0.0]])
    accuracy = per_class_top1(confusion_matrix(np.array([0, 1, 1, 1]), probs.argmax(axis=1), 3))
    np.testing.assert_allclose(accuracy[:2], [1.0, 2 / 3])
    assert np.isnan(accuracy[2])  # no validation sample of that class


def test_images_become_one_grid(tmp_path):
    digits = [np.full((8, 8, 1), 16 * i, np.uint8) for i in range(10)]
    with TrainingLogger(tmp_path) as logger:
        logger.log_images("train/images", digits, 0)
        mixed_sizes = [np.zeros((8, 8, 3), np.uint8), np.zeros((9, 8, 3), np.uint8)]
        with pytest.raises(ValueError, match="share one HxWxC shape"):
            logger.log_images("train/images", mixed_sizes, 0)
    (record,) = LogReader(file_path=logger.file_path).get_data("image", "train/images")
    grid = Image.open(io.BytesIO(record.image.encoded_image_string))
    assert record.id == 0 and grid.size == (8 * 96, 2 * 96)  # 8 per row, 8x8 digits enlarged to 96x96


@contextlib.contextmanager
def failures_reported_as_a_visualdl_format_change():
    try:
        yield
    except Exception as exc:
        pytest.fail(
            f"VisualDL {visualdl.__version__} does not store runs as paddle_googlenet/vdl_records.py expects "
            "(verified with VisualDL 2.5.3): its record format or file rules changed. Re-check every point "
            "that module's docstring says it relies on before using this VisualDL version.\n"
            f"{type(exc).__name__}: {exc}"
        )


def values_by_tag(records):
    """``{(kind, tag): [Record.Value, ...]}`` of vdl_records.read_records's records."""
    grouped = collections.defaultdict(list)
    for record in records:
        grouped[(record.kind, record.tag)].append(record.value)
    return dict(grouped)


def values_by_tag_read_by_visualdl(path):
    """The same, as VisualDL's own LogReader reads ``path``."""
    reader = LogReader(file_path=path)
    tags = [(kind, tag) for kind, kind_tags in reader.get_tags().items() for tag in kind_tags]
    return {(kind, tag): list(reader.get_data(kind, tag)) for kind, tag in tags}


def test_visualdl_record_format_is_the_one_vdl_records_relies_on(tmp_path):
    """Fails with a clear message if a VisualDL upgrade changes what vdl_records.py relies on."""
    logdir = str(tmp_path)
    image = np.arange(5 * 4 * 3, dtype=np.uint8).reshape(5, 4, 3)
    curve = {"tp": [3, 2, 0], "fp": [4, 1, 0], "tn": [0, 3, 4], "fn": [0, 1, 3],
             "precision": [3 / 7, 2 / 3, 0.0], "recall": [1.0, 2 / 3, 0.0]}
    with failures_reported_as_a_visualdl_format_change():
        name = vdl_records.new_file_name(logdir)
        with LogWriter(logdir=logdir, file_name=name) as writer:
            writer.add_scalar(tag="a/loss", value=0.5, step=3)
            writer.add_scalar(tag="a/loss", value=0.25, step=7)
            writer.add_image(tag="a/image", img=image, step=7)
            writer.add_hparams({"lr": 0.1, "model": "googlenet"}, ["a/loss"])
        with LogWriter(logdir=logdir, file_name=name) as writer:  # appends to the file
            vdl_records.add_pr_curve(writer, "b/pr", 9, curve)
        path = os.path.join(logdir, name)
        assert vdl_records.displayed_record_file(logdir) == path
        assert LogReader(logdir=logdir).logs(update=True) == {logdir: name}

        records, complete = vdl_records.read_records(path)
        assert complete
        records = [record for record in records if record.kind != "meta_data"]
        assert [(record.kind, record.tag) for record in records] == [
            ("scalar", "a/loss"), ("scalar", "a/loss"), ("image", "a/image"), ("hyper_parameters", "hparam"),
            ("pr_curve", "b/pr")]
        scalar_1, scalar_2, image_record, hparams, pr_curve = records
        assert [scalar_1.step, scalar_2.step, image_record.step, pr_curve.step] == [3, 7, 7, 9]
        assert [scalar_1.value.value, scalar_2.value.value] == [0.5, 0.25]
        decoded = np.asarray(Image.open(io.BytesIO(image_record.value.image.encoded_image_string)))
        np.testing.assert_array_equal(decoded, image)
        infos = {info.name: getattr(info, info.WhichOneof("type")) for info in hparams.value.hparam.hparamInfos}
        assert infos == {"lr": 0.1, "model": "googlenet"}
        assert [info.name for info in hparams.value.hparam.metricInfos] == ["a/loss"]
        stored_curve = pr_curve.value.pr_curve
        for key, field in [("tp", "TP"), ("fp", "FP"), ("tn", "TN"), ("fn", "FN")]:
            assert list(getattr(stored_curve, field)) == curve[key], key
        np.testing.assert_allclose(stored_curve.precision, curve["precision"], rtol=1e-6)
        np.testing.assert_allclose(stored_curve.recall, curve["recall"], rtol=1e-6)
        assert values_by_tag_read_by_visualdl(path) == values_by_tag(vdl_records.read_records(path)[0])

        kept = [record for record in records if record.step <= 7 and record.kind != "hyper_parameters"]
        new_name = vdl_records.replace_displayed_file(logdir, kept)
        assert LogReader(logdir=logdir).logs(update=True) == {logdir: new_name}
        assert vdl_records.displayed_record_file(logdir) == os.path.join(logdir, new_name)
        assert os.path.getsize(path) == 0
        assert values_by_tag_read_by_visualdl(os.path.join(logdir, new_name)) == values_by_tag(kept)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class VisualDLServer:
    """``visualdl --logdir LOGDIR`` on a free localhost port, queried through its HTTP API."""

    def __init__(self, logdir):
        self.port = free_port()
        self.process = subprocess.Popen(
            [os.path.join(os.path.dirname(sys.executable), "visualdl"), "--logdir", str(logdir),
             "--host", "127.0.0.1", "--port", str(self.port), "--cache-timeout", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                self.get("runs")
                return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError("visualdl server did not answer within 60 s")
                time.sleep(0.3)

    def get(self, api, **query):
        url = f"http://127.0.0.1:{self.port}/app/api/{api}?{urllib.parse.urlencode(query)}"
        with urllib.request.urlopen(url, timeout=30) as response:
            return json.load(response)

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)


def test_server_http_api_across_resume(tmp_path):
    run = tmp_path / "googlenet"
    kill_after_logging(run, range(1, 13))
    server = VisualDLServer(tmp_path)
    try:
        run_name = server.get("runs")["data"][0]
        points = server.get("scalar/list", run=run_name, tag="train/loss")["data"]  # [[time_ms, step, value]]
        assert [step for _, step, _ in points] == list(range(1, 13))
        with TrainingLogger(run, resume_step=8) as logger:
            log_losses(logger, range(9, 16), process=2)
            logger.log_hparams({"model": "googlenet"}, {"val_top1": 0.75})
        # The running server keeps answering; it still holds the points it read before the resume.
        assert server.get("scalar/list", run=run_name, tag="train/loss")["status"] == 0
    finally:
        server.stop()
    server = VisualDLServer(tmp_path)
    try:
        points = server.get("scalar/list", run=run_name, tag="train/loss")["data"]
        assert [step for _, step, _ in points] == list(range(1, 16))
        np.testing.assert_allclose([v for _, _, v in points[7:9]], [loss_at(8, 1), loss_at(9, 2)], rtol=1e-6)
        (summary,) = server.get("hparams/list")["data"]
        assert summary["hparams"] == {"model": "googlenet"}
        assert summary["metrics"] == {"whole_run/val_top1": 0.75}
    finally:
        server.stop()
