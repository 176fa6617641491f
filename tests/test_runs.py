"""train.py around the training loop: earlier runs are never clobbered, resume and fine-tuning, evaluation
of a checkpoint, and every usage error in one line with exit code 2."""

import json

import numpy as np
import paddle
import pytest

from paddle_googlenet.checkpoint import load_checkpoint
from paddle_googlenet.models import get_model
from paddle_googlenet.pretrained import load_pretrained, read_weights, vision_names_to_ours
from paddle_googlenet.training import main

from helpers import run_files, run_main, run_script, write_tiny_list_dataset
from helpers import tiny_args as shared_tiny_args


def tiny_args(lists, output, *extra, model="googlenet"):
    return shared_tiny_args(lists, output, *extra, model=model, epochs=1)


def run(capsys, argv):
    return run_main(main, capsys, argv)


@pytest.fixture(scope="module")
def earlier_run(tiny_lists, tmp_path_factory):
    """The output folder of a finished one-epoch GoogLeNet run on the tiny lists."""
    output = tmp_path_factory.mktemp("earlier") / "run"
    assert main(tiny_args(tiny_lists, output)) == 0
    return output


def test_a_new_run_never_touches_an_earlier_one(tiny_lists, earlier_run, capsys):
    before = run_files(earlier_run)
    code, out, err = run(capsys, tiny_args(tiny_lists, earlier_run))
    assert code == 2 and out == ""
    assert err.count("\n") == 1, err
    assert f"{earlier_run} already holds a googlenet run on list: 1 of 1 epochs done, best val top-1" in err
    assert "--resume auto" in err and "--output DIR" in err and "--overwrite" in err
    assert run_files(earlier_run) == before


def test_overwrite_replaces_the_earlier_run_files_and_only_them(tiny_lists, earlier_run, tmp_path, capsys):
    output = tmp_path / "run"
    for path, data in run_files(earlier_run).items():
        (output / path.relative_to(earlier_run)).parent.mkdir(parents=True, exist_ok=True)
        (output / path.relative_to(earlier_run)).write_bytes(data)
    (output / "epoch_7.pdckpt").write_bytes((output / "latest.pdckpt").read_bytes())  # from a longer earlier run
    (output / "notes.txt").write_text("mine")
    code, out, _ = run(capsys, tiny_args(tiny_lists, output, "--overwrite", "--seed", "1"))
    assert code == 0 and "--overwrite: deleted the" in out
    assert not (output / "epoch_7.pdckpt").exists() and (output / "notes.txt").read_text() == "mine"
    assert [json.loads(line)["epoch"] for line in (output / "metrics.jsonl").read_text().splitlines()] == [1]
    assert json.loads((output / "args.json").read_text())["seed"] == 1
    assert len(list((output / "vdl").glob("vdlrecords*"))) == 1


def test_resume_auto_without_a_checkpoint_does_not_clobber_the_records(tiny_lists, earlier_run, tmp_path, capsys):
    output = tmp_path / "run"
    output.mkdir()
    (output / "metrics.jsonl").write_text((earlier_run / "metrics.jsonl").read_text())
    code, _, err = run(capsys, tiny_args(tiny_lists, output, "--resume", "auto"))
    assert code == 2 and "but no checkpoint to resume" in err and err.count("\n") == 1
    assert (output / "metrics.jsonl").read_text() == (earlier_run / "metrics.jsonl").read_text()


def test_resume_auto_in_a_new_folder_starts_a_run_with_the_recipe_given(tiny_lists, tmp_path, capsys):
    output = tmp_path / "new"
    code, _, err = run(capsys, tiny_args(tiny_lists, output, "--resume", "auto", "--lr-schedule", "cosine"))
    assert code == 0, err
    assert json.loads((output / "args.json").read_text())["lr_schedule"] == "cosine"
    assert len((output / "metrics.jsonl").read_text().splitlines()) == 1


def test_a_damaged_metrics_file_is_one_line_naming_it(tiny_lists, earlier_run, tmp_path, capsys):
    output = tmp_path / "damaged"
    output.mkdir()
    (output / "metrics.jsonl").write_text((earlier_run / "metrics.jsonl").read_text() + '{"epoch": 2, "val_t')
    code, _, err = run(capsys, tiny_args(tiny_lists, output))
    assert code == 2 and err.count("\n") == 1, err
    assert "metrics.jsonl, line 2: not a JSON record" in err


@pytest.mark.parametrize("flags, difference", [
    (("--image-size", "96"), "it was trained with --image-size 64, this run has --image-size 96"),
    (("--lr-schedule", "cosine"), "it was trained with --lr-schedule discexp, this run has --lr-schedule cosine"),
])
def test_resume_with_other_settings_fails_in_one_line_before_loading(tiny_lists, earlier_run, flags, difference, capsys):
    before = run_files(earlier_run)
    code, out, err = run(capsys, tiny_args(tiny_lists, earlier_run, "--resume", "auto", "--epochs", "2", *flags))
    assert code == 2 and err.count("\n") == 1 and difference in err and "--pretrained" in err, err
    assert run_files(earlier_run) == before


def test_resume_into_another_class_count_fails_in_one_line(earlier_run, tmp_path, capsys):
    two_classes = write_tiny_list_dataset(tmp_path / "two", classes=2)
    code, out, err = run(capsys, tiny_args(two_classes, tmp_path / "out", "--resume", earlier_run / "latest.pdckpt"))
    assert code == 2 and err.count("\n") == 1, err
    assert "its model has 3 classes, this run's data has 2" in err and "Traceback" not in err


def test_pretrained_starts_a_new_run_with_the_backbone_and_fresh_classifiers(earlier_run, tmp_path, capsys):
    two_classes = write_tiny_list_dataset(tmp_path / "two", classes=2)
    output = tmp_path / "finetuned"
    code, out, err = run(capsys, tiny_args(two_classes, output, "--pretrained", earlier_run / "latest.pdckpt", "--epochs", "1"))
    assert code == 0, err
    assert "tensors loaded from" in out and "6 re-initialised (aux1.fc2, aux2.fc2, fc: other classes)" in out and "0 ignored" in out
    ckpt = load_checkpoint(output / "latest.pdckpt")
    assert ckpt["train_state"]["epoch"] == 1 and ckpt["model_kwargs"]["num_classes"] == 2  # a new run: epoch 1 of its own


def test_pretrained_classifiers_of_other_classes_are_reinitialised_even_of_the_same_shape(tiny_lists, earlier_run, tmp_path, capsys):
    output = tmp_path / "reordered"
    code, out, err = run(capsys, tiny_args(tiny_lists, output, "--classes", "2", "1", "0", "--pretrained", earlier_run / "latest.pdckpt"))
    assert code == 0, err
    assert "6 re-initialised (aux1.fc2, aux2.fc2, fc: other classes)" in out


def test_pretrained_weights_are_the_files_where_shapes_agree(tmp_path):
    paddle.seed(0)
    source = get_model("googlenet", num_classes=3)
    paddle.save(source.state_dict(), str(tmp_path / "w.pdparams"))
    paddle.seed(1)
    target = get_model("googlenet", num_classes=5)
    fresh_fc = target.fc.weight.numpy().copy()
    path = tmp_path / "w.pdparams"
    report = load_pretrained(target, "googlenet", list("abcde"), read_weights(path, "googlenet"), path)
    assert report.startswith(f"{len(source.state_dict()) - 6} tensors loaded") and "6 re-initialised (aux1.fc2, aux2.fc2, fc)" in report
    np.testing.assert_array_equal(target.ince4a.conv5.conv.weight.numpy(), source.ince4a.conv5.conv.weight.numpy())
    np.testing.assert_array_equal(target.fc.weight.numpy(), fresh_fc)


def test_a_backbone_tensor_of_another_shape_is_an_error_naming_it(tmp_path, capsys):
    state = get_model("googlenet", num_classes=3).state_dict()
    state["ince3a.conv3.conv.weight"] = paddle.zeros([128, 96, 5, 5])
    paddle.save(state, str(tmp_path / "w.pdparams"))
    lists = write_tiny_list_dataset(tmp_path / "data")
    code, _, err = run(capsys, tiny_args(lists, tmp_path / "out", "--pretrained", tmp_path / "w.pdparams"))
    assert code == 2 and err.count("\n") == 1
    assert "ince3a.conv3.conv.weight has shape [128, 96, 5, 5] there and [128, 96, 3, 3]" in err


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "vgg13", "vgg16", "vgg19"])
def test_paddle_vision_weights_load_tensor_for_tensor(name):
    with paddle.LazyGuard():  # shapes and names only
        theirs = getattr(paddle.vision.models, name)(num_classes=7).state_dict()
        ours = get_model(name, num_classes=7).state_dict()
    renamed = vision_names_to_ours(name, theirs)
    assert set(renamed) == set(ours)
    assert all(list(renamed[key].shape) == list(ours[key].shape) for key in ours)


def test_vision_vgg16_features_compute_ours_after_loading(tmp_path):
    paddle.seed(0)
    vision = paddle.vision.models.vgg16(num_classes=4)
    paddle.save(vision.state_dict(), str(tmp_path / "vgg16.pdparams"))
    ours = get_model("vgg16", num_classes=4)
    path = tmp_path / "vgg16.pdparams"
    assert load_pretrained(ours, "vgg16", list("abcd"), read_weights(path, "vgg16"), path).startswith("32 tensors loaded")
    vision.eval(), ours.eval()
    x = paddle.randn([1, 3, 64, 64])
    np.testing.assert_allclose(ours.features(x).numpy(), vision.features(x).numpy(), rtol=1e-5, atol=1e-6)


def test_eval_only_prints_metrics_and_writes_readable_reports(tiny_lists, earlier_run, capsys):
    checkpoint = earlier_run / "best.pdckpt"
    before = run_files(earlier_run)
    eval_args = [arg for arg in tiny_args(tiny_lists, "-", "--eval-only", checkpoint) if arg not in ("--output", "-")]
    code, out, err = run(capsys, eval_args)
    assert code == 0, err
    reports = earlier_run / "eval-best"
    metrics = json.loads((reports / "metrics.json").read_text())
    recorded = json.loads((earlier_run / "metrics.jsonl").read_text().splitlines()[-1])
    assert metrics["top1"] == pytest.approx(recorded["val_top1"]) and metrics["loss"] == pytest.approx(recorded["val_loss"], rel=1e-5)
    assert f"top-1 {100 * metrics['top1']:.2f} %" in out
    confusion = json.loads((reports / "confusion.json").read_text())
    matrix = np.array(confusion["matrix"])
    assert matrix.sum() == metrics["images"] == 6 and np.trace(matrix) == round(metrics["top1"] * 6)
    per_class = json.loads((reports / "per_class.json").read_text())
    assert [row["images"] for row in per_class] == matrix.sum(axis=1).tolist()
    assert (reports / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {path: data for path, data in run_files(earlier_run).items() if reports not in path.parents} == before
    code, _, err = run(capsys, eval_args)
    assert code == 2 and "already holds files" in err  # the reports are not replaced silently


@pytest.mark.parametrize("flags, message", [
    (("--image-size", "32"), "argument --image-size: must be at least 64, got 32"),
    (("--batch-size", "0"), "argument --batch-size: must be at least 1, got 0"),
    (("--resume", "auto", "--overwrite"), "--resume and --overwrite do not go together"),
    (("--best-of", "ema"), "--best-of ema needs --ema DECAY"),
    (("--lr-schedule", "step"), "--lr-schedule step needs --lr-decay-epochs N"),
])
def test_usage_errors_exit_2_with_one_line(tiny_lists, tmp_path, flags, message):
    result = run_script("train.py", *tiny_args(tiny_lists, tmp_path / "out", *flags), timeout=300)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines()[-1].startswith(f"train.py: error: {message}"), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_an_early_error_leaves_no_folder_behind(tmp_path, capsys):
    missing = tmp_path / "missing.txt"
    code, _, err = run(capsys, tiny_args((missing, missing), tmp_path / "out"))
    assert code == 2 and str(missing) in err
    assert not (tmp_path / "out").exists()


def test_a_bad_logdir_is_reported_as_the_logdir(tiny_lists, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, err = run(capsys, tiny_args(tiny_lists, tmp_path / "out", "--logdir", blocker / "vdl"))
    assert code == 2 and f"as the --logdir folder: {blocker} is a file" in err and "PosixPath" not in err


def test_labels_beyond_the_data_warn_naming_the_empty_classes(tmp_path, capsys):
    train_list, val_list = write_tiny_list_dataset(tmp_path / "data", classes=3)
    train_list.write_text(train_list.read_text().replace("\t2\n", "\t5\n"))
    val_list.write_text(val_list.read_text().replace("\t2\n", "\t5\n"))
    code, out, err = run(capsys, tiny_args((train_list, val_list), tmp_path / "out"))
    assert code == 0
    assert "3 of the 6 classes have no training image: 2 ('2'), 3 ('3'), 4 ('4')" in err


def test_the_closing_line_and_the_header(tiny_lists, tmp_path, capsys):
    code, out, _ = run(capsys, tiny_args(tiny_lists, tmp_path / "out"))
    assert code == 0
    assert "; 1 epoch of batch 6 at 64px on cpu" in out
    assert "top1" in out and "top5" not in out  # 3 classes: a top-5 would always be 100 %
    best = max(json.loads(line)["val_top1"] for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines())
    assert out.splitlines()[-1] == f"done: best val top-1 {100 * best:.2f} % at epoch 1 of 1: {tmp_path / 'out' / 'best.pdckpt'}"


def test_classes_and_train_per_class_select_the_data(tmp_path, capsys):
    lists = write_tiny_list_dataset(tmp_path / "data", classes=3, per_class=8)
    code, out, _ = run(capsys, tiny_args(lists, tmp_path / "out", "--classes", "2", "0", "--train-per-class", "2"))
    assert code == 0 and "2 classes; 4 train, 4 val images" in out
    ckpt = load_checkpoint(tmp_path / "out" / "latest.pdckpt")
    assert ckpt["class_names"] == ["2", "0"]


def test_weights_of_a_deeper_model_are_loaded_where_they_fit_and_the_rest_is_named(tmp_path):
    """ResNet-34 weights into a ResNet-18: the report says which tensors this model does not have."""
    with paddle.LazyGuard():
        deeper = get_model("resnet34", num_classes=3).state_dict()
    path = tmp_path / "resnet34.safetensors"
    from paddle_googlenet.safe_load import save_safetensors

    pytest.importorskip("safetensors")
    save_safetensors({key: np.zeros(value.shape, np.float32) for key, value in deeper.items()}, path)
    report = load_pretrained(get_model("resnet18", num_classes=3), "resnet18", ["a", "b", "c"], read_weights(path, "resnet18"), path)
    ignored = len(deeper) - len(get_model("resnet18", num_classes=3).state_dict())
    assert f"{ignored} ignored (stages." in report and "tensors this resnet18 does not have" in report
