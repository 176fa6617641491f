"""One training epoch and one evaluation pass, with the legacy GoogLeNet loss and per-head metrics."""

import math
import sys
import time
from dataclasses import asdict, dataclass, field

from . import distributed
from .runtime import import_paddle
from .models import GoogLeNetOutputs

paddle = import_paddle()
F = paddle.nn.functional

AUX_WEIGHT = 0.3  # the paper's and the legacy train.py's weight of each auxiliary loss
HEADS = ("", "_aux1", "_aux2")  # metric-name suffixes of the main head and the two auxiliary heads


class NonFiniteLoss(Exception):
    """The loss became NaN or infinite; training stops before anything is overwritten."""


@dataclass
class TrainState:
    """Where a run stands; saved in every checkpoint and restored by ``--resume``."""

    epoch: int = 0  # epochs completed
    step_in_epoch: int = 0  # batches done in the current (unfinished) epoch
    global_step: int = 0  # optimizer steps since the start of the run
    best_val_top1: float = -1.0
    epoch_sums: dict = field(default_factory=dict)  # running sums of the unfinished epoch

    def to_dict(self):
        return asdict(self)


def classification_loss(outputs, labels, aux_weight=AUX_WEIGHT, label_smoothing=0.0):
    """Cross-entropy of the main head plus ``aux_weight`` × each auxiliary head's (GoogLeNet).

    With ``label_smoothing`` ε every head's target is (1 - ε) on the label plus ε spread evenly over
    all classes, and the losses are those smoothed cross-entropies. Returns the total loss to
    minimise, the logits of each head and each head's loss, both keyed by metric suffix.
    """
    heads = dict(zip(HEADS, outputs)) if isinstance(outputs, GoogLeNetOutputs) else {"": outputs}
    losses = {suffix: F.cross_entropy(logits, labels, label_smoothing=label_smoothing) for suffix, logits in heads.items()}
    total = losses[""] + aux_weight * sum(loss for suffix, loss in losses.items() if suffix)
    return total, heads, losses


def correct_topk(logits, labels, k):
    """How many rows have their label among the ``k`` highest logits."""
    k = min(k, logits.shape[1])
    top = paddle.topk(logits, k, axis=1)[1]
    return int((top == labels.unsqueeze(1)).any(axis=1).astype("int64").sum())


class MetricSums:
    """Per-sample sums of losses and hits, averaged at the end (and summed over ranks)."""

    def __init__(self, sums=None):
        self.sums = dict(sums or {})

    def add(self, name, value):
        self.sums[name] = self.sums.get(name, 0.0) + float(value)

    def averages(self, all_ranks=False):
        names = sorted(self.sums)
        values = distributed.all_reduce_sum([self.sums[n] for n in names]) if all_ranks else [self.sums[n] for n in names]
        totals = dict(zip(names, values))
        count = max(totals.pop("count", 0.0), 1.0)
        return {name: value / count for name, value in totals.items()}


def add_batch_metrics(sums, heads, losses, labels):
    n = labels.shape[0]
    sums.add("count", n)
    for suffix, logits in heads.items():
        sums.add(f"loss{suffix}", float(losses[suffix]) * n)
        sums.add(f"top1{suffix}", correct_topk(logits, labels, 1))


def _format_eta(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


@dataclass
class EpochContext:
    """What ``train_one_epoch`` needs besides the model: the run's fixed settings."""

    epochs: int
    aux_weight: float
    label_smoothing: float
    log_interval: int
    world_size: int
    logger: object  # vdl.TrainingLogger
    stop_requested: object  # callable returning True after SIGINT/SIGTERM (on this rank)
    ema: object = None  # ema.ModelEMA, updated after every optimizer step


def train_one_epoch(model, loader, optimizer, scheduler, precision, state, ctx):
    """Train until the loader is exhausted or a stop is requested; return (the epoch's averages, stopped).

    Updates ``state`` (steps, running sums) in place, so that a checkpoint written after an
    interruption resumes exactly here.
    """
    model.train()
    sums = MetricSums(state.epoch_sums)
    interval = MetricSums()
    batches = len(loader)
    skipped, images_seen, stop = 0, 0, False
    start = tick = time.time()
    for images, labels, dropped in loader:
        skipped += int(dropped.sum())
        batch = labels.shape[0]
        if batch == 0:
            continue
        labels = labels.reshape([-1]).astype("int64")
        with precision.autocast():
            outputs = model(images)
            total, heads, losses = classification_loss(outputs, labels, ctx.aux_weight, ctx.label_smoothing)
        loss_value = float(losses[""])
        # One reduction for both checks keeps every rank on the same step (or they would wait forever).
        diverged, stop = distributed.all_reduce_sum([not math.isfinite(float(total)), ctx.stop_requested()])
        if diverged:
            raise NonFiniteLoss(
                f"the training loss became {loss_value if not math.isfinite(loss_value) else 'non-finite'} at epoch "
                f"{state.epoch + 1}, step {state.step_in_epoch + 1} (global step {state.global_step + 1}) with learning "
                f"rate {scheduler.last_lr:g}. Try a lower --lr (for example half of it); the last checkpoint was left untouched."
            )
        if stop:  # this batch is not trained on; a resume starts with it
            break
        scheduler.start_batch(batch * ctx.world_size)
        precision.backward_and_step(total, optimizer)
        if ctx.ema is not None:
            ctx.ema.update()
        state.global_step += 1
        state.step_in_epoch += 1
        images_seen += batch
        for target in (sums, interval):
            add_batch_metrics(target, heads, losses, labels)
        if state.step_in_epoch % ctx.log_interval == 0 or state.step_in_epoch == batches:
            now = time.time()
            _log_progress(state, ctx, interval, batches, scheduler.last_lr, interval.sums["count"] * ctx.world_size / (now - tick), now - start, images_seen)
            interval, tick = MetricSums(), now
        state.epoch_sums = dict(sums.sums)
    seconds = time.time() - start
    averages = sums.averages(all_ranks=True)
    skipped = int(distributed.all_reduce_sum([skipped])[0])
    if skipped and distributed.is_main_process():
        print(f"warning: {skipped} unreadable image(s) skipped in epoch {state.epoch + 1} (see the messages above)", file=sys.stderr)
    metrics = {f"train_{name}": value for name, value in averages.items()}
    metrics.update(lr=scheduler.last_lr, seconds=seconds, img_per_s=images_seen * ctx.world_size / max(seconds, 1e-9), skipped_images=skipped)
    return metrics, bool(stop)


def _log_progress(state, ctx, interval, batches, lr, img_per_s, elapsed, images_seen):
    averages = interval.averages(all_ranks=True)
    step_seconds = elapsed / max(state.step_in_epoch, 1)
    remaining = (batches - state.step_in_epoch) * step_seconds + (ctx.epochs - state.epoch - 1) * batches * step_seconds
    scalars = {"train/loss": averages["loss"], "train/top1": averages["top1"], "train/lr": lr, "train/img_per_s": img_per_s}
    for suffix in HEADS[1:]:
        if f"loss{suffix}" in averages:
            scalars[f"train/loss{suffix}"] = averages[f"loss{suffix}"]
            scalars[f"train/top1{suffix}"] = averages[f"top1{suffix}"]
    ctx.logger.log_scalars(state.global_step, scalars)
    if distributed.is_main_process():
        print(
            f"epoch {state.epoch + 1}/{ctx.epochs} step {state.step_in_epoch}/{batches} "
            f"loss {averages['loss']:.4f} top1 {100 * averages['top1']:.1f}% lr {lr:.3g} "
            f"{img_per_s:.1f} img/s eta {_format_eta(remaining)}",
            flush=True,
        )


@paddle.no_grad()
def evaluate(model, loader, precision):
    """Loss, top-1, top-5 and top-1 error of the main head on a whole split, plus its probabilities.

    Under ``paddle.distributed`` each rank evaluates its shard; sums and probabilities are combined.
    """
    model.eval()
    sums = MetricSums()
    probabilities, targets = [], []
    for images, labels, _ in loader:
        if labels.shape[0] == 0:
            continue
        labels = labels.reshape([-1]).astype("int64")
        with precision.autocast():
            logits = model(images)
        logits = logits.astype("float32")
        n = labels.shape[0]
        sums.add("count", n)
        sums.add("loss", float(F.cross_entropy(logits, labels)) * n)
        sums.add("top1", correct_topk(logits, labels, 1))
        sums.add("top5", correct_topk(logits, labels, 5))
        probabilities.append(F.softmax(logits, axis=1).numpy())
        targets.append(labels.numpy())
    metrics = sums.averages(all_ranks=True)
    metrics["error"] = 1.0 - metrics["top1"]  # the legacy classification_error
    return metrics, distributed.concat_over_ranks(probabilities), distributed.concat_over_ranks(targets)
