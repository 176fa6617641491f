"""VisualDL logs of real training runs, read back with VisualDL's reader and checked against metrics.jsonl.

The GoogLeNet run is stopped by SIGTERM in the middle of epoch 1, resumed with ``--epochs 1``, then
resumed again with ``--epochs 3``; the slow test kills a run after it logged steps its last
checkpoint lacks. The curves must still read as one run: x axis the global step, no restart at 0,
no duplicated point.
"""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("visualdl")
from visualdl import LogReader  # noqa: E402

from paddle_googlenet import vdl  # noqa: E402
from paddle_googlenet.checkpoint import load_checkpoint  # noqa: E402
from paddle_googlenet.training import main  # noqa: E402

from helpers import REPO, read_metrics  # noqa: E402

STEPS_PER_EPOCH = 3  # 18 training images of tiny_lists, batch 6
EPOCHS = 3
CLASS_NAMES = ["0", "1", "2"]
VAL_IMAGES = 6


def run_args(tiny_lists, output, *extra, model="googlenet"):
    """The tiny run of tests/helpers.py, with a learning rate that decays every epoch so train/lr varies."""
    train_list, val_list = tiny_lists
    return [
        model, "--dataset", "list", "--train-list", str(train_list), "--val-list", str(val_list),
        "--image-size", "64", "--batch-size", "6", "--workers", "0", "--log-interval", "1",
        "--lr-decay-epochs", "1", "--output", str(output), *extra,
    ]


def record_reader(output):
    return LogReader(file_path=vdl.displayed_record_file(str(Path(output) / "vdl")))


class SigtermAtStep:
    """A train.py callback that sends SIGTERM to this process right after global step ``step``.

    train.py's own handler turns the signal into "checkpoint and stop", as for a SIGTERM from outside.
    """

    def __init__(self, step):
        self.step = step

    def on_step(self, run, state):
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.fixture(scope="module")
def googlenet_run(tiny_lists, tmp_path_factory):
    """Output folder of a 3-epoch GoogLeNet run: SIGTERM at global step 2, resumed to epoch 1, then to epoch 3."""
    output = tmp_path_factory.mktemp("runs") / "googlenet"
    assert main(run_args(tiny_lists, output, "--epochs", str(EPOCHS)), callbacks=[SigtermAtStep(2)]) == 128 + signal.SIGTERM
    assert load_checkpoint(output / "latest.pdckpt")["train_state"]["step_in_epoch"] == 2  # stopped mid-epoch
    assert main(run_args(tiny_lists, output, "--epochs", "1", "--resume", "auto")) == 0
    assert main(run_args(tiny_lists, output, "--epochs", str(EPOCHS), "--resume", "auto")) == 0
    return output


@pytest.fixture(scope="module")
def resnet_run(tiny_lists, tmp_path_factory):
    """Output folder of a 1-epoch ResNet-18 run (a model with a single head; faster than AlexNet here)."""
    output = tmp_path_factory.mktemp("runs") / "resnet18"
    assert main(run_args(tiny_lists, output, "--epochs", "1", model="resnet18")) == 0
    return output


def assert_one_point_per_step(scalars, tag, expected_steps):
    steps = [step for step, _ in scalars[tag]]
    assert steps == list(expected_steps), f"{tag}: steps {steps}"


def assert_epoch_means_match(scalars, tag, metrics, key):
    """With --log-interval 1 and equal batches, an epoch's points average to the epoch's value."""
    values = np.array([value for _, value in scalars[tag]]).reshape(len(metrics), STEPS_PER_EPOCH)
    np.testing.assert_allclose(values.mean(axis=1), [m[key] for m in metrics], rtol=1e-5, err_msg=tag)


def test_every_fixed_tag_is_logged_at_global_steps(googlenet_run):
    scalars = vdl.read_scalars(str(googlenet_run / "vdl"))
    assert set(vdl.SCALAR_TAGS) <= set(scalars)
    train_steps = range(1, EPOCHS * STEPS_PER_EPOCH + 1)  # continues across every resume: no 0, no repeat
    for tag in vdl.TRAIN_TAGS + vdl.AUX_HEAD_TAGS:
        assert_one_point_per_step(scalars, tag, train_steps)
    for tag in vdl.VAL_TAGS:
        assert_one_point_per_step(scalars, tag, range(STEPS_PER_EPOCH, EPOCHS * STEPS_PER_EPOCH + 1, STEPS_PER_EPOCH))
    assert all(np.isfinite(value) and value > 0 for _, value in scalars["train/img_per_s"])


def test_val_curves_equal_metrics_jsonl(googlenet_run):
    metrics = read_metrics(googlenet_run)
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    scalars = vdl.read_scalars(str(googlenet_run / "vdl"))
    for tag, key in (("val/loss", "val_loss"), ("val/top1", "val_top1"), ("val/top5", "val_top5")):
        assert [step for step, _ in scalars[tag]] == [m["global_step"] for m in metrics]
        np.testing.assert_allclose([value for _, value in scalars[tag]], [m[key] for m in metrics], rtol=1e-6, err_msg=tag)


def test_train_curves_agree_with_metrics_jsonl(googlenet_run):
    metrics = read_metrics(googlenet_run)
    scalars = vdl.read_scalars(str(googlenet_run / "vdl"))
    lr_at = dict(scalars["train/lr"])
    np.testing.assert_allclose([lr_at[m["global_step"]] for m in metrics], [m["lr"] for m in metrics], rtol=1e-6)
    np.testing.assert_allclose([m["lr"] for m in metrics], [1e-3, 1e-4, 1e-5], rtol=1e-6)  # decayed each epoch
    for head in ("", "_aux1", "_aux2"):  # epoch 1 mixes points of the SIGTERMed and the resumed process
        assert_epoch_means_match(scalars, f"train/loss{head}", metrics, f"train_loss{head}")
        assert_epoch_means_match(scalars, f"train/top1{head}", metrics, f"train_top1{head}")


def test_training_images_are_logged_once_at_step_0(googlenet_run):
    (record,) = record_reader(googlenet_run).get_data("image", "train/images")
    assert record.id == 0 and record.image.encoded_image_string.startswith(b"\x89PNG")


def test_per_class_view_at_every_evaluation(googlenet_run):
    reader = record_reader(googlenet_run)
    tags = reader.get_tags()
    eval_steps = [m["global_step"] for m in read_metrics(googlenet_run)]
    assert [record.id for record in reader.get_data("image", vdl.PER_CLASS_TOP1_TAG)] == eval_steps
    class_tags = [vdl.pr_curve_tag(i, name, len(CLASS_NAMES)) for i, name in enumerate(CLASS_NAMES)]
    assert tags["pr_curve"] == [vdl.ALL_CLASSES_PR_TAG, *class_tags]
    for tag in tags["pr_curve"]:
        assert [record.id for record in reader.get_data("pr_curve", tag)] == eval_steps, tag
    last_pooled = reader.get_data("pr_curve", vdl.ALL_CLASSES_PR_TAG)[-1].pr_curve
    assert last_pooled.TP[0] + last_pooled.FN[0] == VAL_IMAGES  # one positive per image
    assert last_pooled.TP[0] + last_pooled.FP[0] == VAL_IMAGES * len(CLASS_NAMES)


def test_hparams_of_the_finished_run_with_its_final_metric(googlenet_run):
    reader = record_reader(googlenet_run)
    (record,) = reader.get_data("hyper_parameters", "hparam")  # the earlier processes' summaries are dropped
    infos = {info.name: getattr(info, info.WhichOneof("type")) for info in record.hparam.hparamInfos}
    assert infos["model"] == "googlenet" and infos["epochs"] == EPOCHS and infos["batch_size"] == 6
    assert [info.name for info in record.hparam.metricInfos] == ["whole_run/val/best_top1"]
    metrics = read_metrics(googlenet_run)
    (point,) = vdl.read_scalars(str(googlenet_run / "vdl"))["whole_run/val/best_top1"]
    assert point[0] == metrics[-1]["global_step"]
    np.testing.assert_allclose(point[1], max(m["val_top1"] for m in metrics), rtol=1e-6)


def test_single_head_model_has_no_aux_curves(resnet_run):
    scalars = vdl.read_scalars(str(resnet_run / "vdl"))
    assert set(vdl.TRAIN_TAGS + vdl.VAL_TAGS) <= set(scalars)
    assert not set(vdl.AUX_HEAD_TAGS) & set(scalars)
    assert_one_point_per_step(scalars, "train/loss", range(1, STEPS_PER_EPOCH + 1))
    assert scalars["val/top1"][0][0] == read_metrics(resnet_run)[0]["global_step"]


@pytest.mark.slow
def test_killed_run_resumes_its_curves_and_the_server_compares_runs(tiny_lists, resnet_run, tmp_path):
    """train.py SIGKILLed in epoch 2 (after logging steps its last checkpoint lacks), resumed, then served."""
    from test_vdl import VisualDLServer

    output = tmp_path / "googlenet"
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), *run_args(tiny_lists, output, "--epochs", "50")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    for line in proc.stdout:
        if line.startswith("epoch 2/50 step 2/3"):
            proc.kill()
            break
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert [step for step, _ in vdl.read_scalars(str(output / "vdl"))["train/loss"]] == [1, 2, 3, 4, 5]
    assert main(run_args(tiny_lists, output, "--epochs", "2", "--resume", "auto")) == 0

    metrics = read_metrics(output)
    scalars = vdl.read_scalars(str(output / "vdl"))
    assert_one_point_per_step(scalars, "train/loss", range(1, 2 * STEPS_PER_EPOCH + 1))
    assert_epoch_means_match(scalars, "train/loss", metrics, "train_loss")

    shutil.copytree(resnet_run / "vdl", tmp_path / "resnet18" / "vdl")
    server = VisualDLServer(tmp_path)  # `visualdl --logdir PARENT`: one run per model
    try:
        runs = {os.path.relpath(run, tmp_path): run for run in server.get("runs")["data"]}
        assert sorted(runs) == [os.path.join("googlenet", "vdl"), os.path.join("resnet18", "vdl")]
        points = server.get("scalar/list", run=runs[os.path.join("googlenet", "vdl")], tag="val/top1")["data"]  # [[time_ms, step, value]]
        assert [step for _, step, _ in points] == [m["global_step"] for m in metrics]
        np.testing.assert_allclose([value for _, _, value in points], [m["val_top1"] for m in metrics], rtol=1e-6)
        summaries = server.get("hparams/list")["data"]
        assert sorted(summary["hparams"]["model"] for summary in summaries) == ["googlenet", "resnet18"]
        assert all(set(summary["metrics"]) == {"whole_run/val/best_top1"} for summary in summaries)
    finally:
        server.stop()
