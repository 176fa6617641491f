"""Beyond the legacy recipe: EMA, label smoothing on every head, warmup + cosine/step, gradient clipping."""

import math
from pathlib import Path

import numpy as np
import paddle
import pytest

from helpers import tiny_args
from paddle_googlenet.checkpoint import load_checkpoint
from paddle_googlenet.ema import ModelEMA
from paddle_googlenet.engine import classification_loss
from paddle_googlenet.models import GoogLeNetOutputs
from paddle_googlenet.schedule import TrainingSchedule
from paddle_googlenet.options import get_args_parser, resolve, resolve_paths
from paddle_googlenet.training import build_optimizer, main
from paddle_googlenet.vdl import read_scalars


def toy_model():
    paddle.seed(0)
    return paddle.nn.Linear(3, 2)


def test_ema_after_k_steps_equals_the_closed_form():
    model, decay, k = toy_model(), 0.8, 5
    ema = ModelEMA(model, decay)
    w0 = model.weight.numpy().astype(np.float64)
    steps = [np.random.default_rng(i).standard_normal(w0.shape) for i in range(1, k + 1)]
    for w in steps:
        model.weight.set_value(w.astype("float32"))
        ema.update()
    closed = decay**k * w0 + (1 - decay) * sum(decay ** (k - i) * w for i, w in enumerate(steps, 1))
    np.testing.assert_allclose(ema.state_dict()["values"]["weight"], closed, rtol=1e-5, atol=1e-6)


def test_ema_stays_float32_for_float16_weights():
    model = toy_model()
    model.to(dtype="float16")
    ema = ModelEMA(model, 0.999)
    start = ema.state_dict()["values"]["weight"].astype(np.float64)
    model.weight.set_value((model.weight.astype("float32") + 1.0).astype("float16"))
    ema.update()
    values = ema.state_dict()["values"]["weight"]
    assert values.dtype == np.float32
    # the average moved by 0.001, about float16's resolution near 1: float32 keeps it to 1e-6
    np.testing.assert_allclose(values, 0.999 * start + 0.001 * model.weight.numpy().astype(np.float64), rtol=1e-6)
    with ema.applied():
        assert model.weight.dtype == paddle.float16


def test_ema_applied_puts_the_weights_back_exactly():
    model = toy_model()
    ema = ModelEMA(model, 0.5)
    model.weight.set_value(model.weight * 3)
    ema.update()
    before = model.weight.numpy().copy()
    with ema.applied():
        np.testing.assert_allclose(model.weight.numpy(), ema.state_dict()["values"]["weight"])
    np.testing.assert_array_equal(model.weight.numpy(), before)


def test_label_smoothing_reaches_every_head():
    paddle.seed(0)
    labels = paddle.to_tensor([0, 2, 1])
    outputs = GoogLeNetOutputs(*(paddle.randn([3, 4]) for _ in range(3)))
    eps = 0.2
    _, _, losses = classification_loss(outputs, labels, aux_weight=0.3, label_smoothing=eps)
    for suffix, logits in zip(("", "_aux1", "_aux2"), outputs):
        log_p = paddle.nn.functional.log_softmax(logits, axis=1).numpy().astype(np.float64)
        target = np.full(log_p.shape, eps / 4)
        target[np.arange(3), labels.numpy()] += 1 - eps
        assert float(losses[suffix]) == pytest.approx(-(target * log_p).sum(1).mean(), rel=1e-5), suffix


def cosine_warmup_formula(step, base, total, warmup):
    return base * min(1.0, step / warmup) * (1 + math.cos(math.pi * (step - 1) / total)) / 2


def test_cosine_with_warmup_follows_the_formula_across_a_resume():
    base, total, warmup = 0.1, 40, 6
    schedule = TrainingSchedule(base, "cosine", total_steps=total, warmup_steps=warmup)
    rates = []
    for _ in range(17):
        schedule.start_batch(8)
        rates.append(schedule.last_lr)
    resumed = TrainingSchedule(base, "cosine", total_steps=total, warmup_steps=warmup)
    resumed.set_state_dict(schedule.state_dict())
    for _ in range(total - 17):
        resumed.start_batch(8)
        rates.append(resumed.last_lr)
    expected = [cosine_warmup_formula(step, base, total, warmup) for step in range(1, total + 1)]
    assert rates == pytest.approx(expected, rel=1e-12)
    assert rates[0] == pytest.approx(base / warmup) and rates[warmup - 1] < base and rates[-1] < 0.01 * base


def test_step_schedule_decays_every_n_steps_and_warms_up():
    schedule = TrainingSchedule(1.0, "step", decay_rate=0.5, decay_steps=4, warmup_steps=2)
    rates = []
    for _ in range(9):
        schedule.start_batch(1)
        rates.append(schedule.last_lr)
    assert rates == pytest.approx([0.5, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25])


def test_clipping_limits_the_global_norm_and_keeps_the_direction():
    args = resolve(resolve_paths(get_args_parser().parse_args(
        ["googlenet", "--dataset", "digits", "--lr", "1", "--momentum", "0", "--weight-decay", "0", "--clip-grad-norm", "0.5"])))
    paddle.seed(0)
    model = paddle.nn.Sequential(paddle.nn.Linear(4, 3), paddle.nn.Linear(3, 2))
    optimizer, scheduler = build_optimizer(model, args, train_size=10, steps_per_epoch=1)
    before = [p.numpy().copy() for p in model.parameters()]
    (model(paddle.randn([5, 4])) * 10).sum().backward()
    gradients = np.concatenate([p.grad.numpy().ravel() for p in model.parameters()])
    assert np.linalg.norm(gradients) > 1  # clipping has work to do
    scheduler.start_batch(5)
    optimizer.step()
    update = np.concatenate([(b - p.numpy()).ravel() for b, p in zip(before, model.parameters())])  # lr 1: the clipped gradient
    assert np.linalg.norm(update) == pytest.approx(0.5, rel=1e-5)
    np.testing.assert_allclose(update / np.linalg.norm(update), gradients / np.linalg.norm(gradients), atol=1e-6)


RECIPE = ["--ema", "0.9", "--best-of", "ema", "--label-smoothing", "0.1", "--lr-schedule", "cosine",
          "--warmup-epochs", "1", "--clip-grad-norm", "5"]


def test_every_option_resumes_exactly_and_is_recorded(tiny_lists, tmp_path):
    assert main(tiny_args(tiny_lists, tmp_path / "straight", *RECIPE, "--keep-checkpoints", "2")) == 0
    # the same run resumed from its first epoch's checkpoint, without repeating the recipe: it is the checkpoint's
    assert main(tiny_args(tiny_lists, tmp_path / "resumed", "--resume", tmp_path / "straight" / "epoch_1.pdckpt")) == 0
    straight, resumed = (load_checkpoint(tmp_path / name / "latest.pdckpt") for name in ("straight", "resumed"))
    for name, value in straight["model"].items():
        np.testing.assert_array_equal(resumed["model"][name], value, err_msg=name)
    for name, value in straight["ema"]["values"].items():
        np.testing.assert_array_equal(resumed["ema"]["values"][name], value, err_msg=name)
    assert resumed["lr_scheduler"] == straight["lr_scheduler"]
    saved = straight["args"]
    assert (saved["ema"], saved["label_smoothing"], saved["lr_schedule"], saved["warmup_epochs"], saved["clip_grad_norm"]) == (
        0.9, 0.1, "cosine", 1.0, 5.0)
    metrics = [line for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert all('"val_top1_ema"' in line and '"val_loss_ema"' in line for line in metrics)
    curves = read_scalars(str(Path(tmp_path / "straight" / "vdl")))
    assert len(curves["val/top1_ema"]) == 2 and len(curves["val/top1"]) == 2
    best = load_checkpoint(tmp_path / "straight" / "best.pdckpt")
    assert best["best_of"] == "ema"
