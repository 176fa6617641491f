"""One training epoch and one evaluation pass, with the legacy GoogLeNet loss and per-head metrics.

``train_one_epoch`` runs the steps of an epoch: forward, the loss of every head (GoogLeNet's two
auxiliary ones weighted by ``aux_weight``), a check that the loss is finite, backward, the optimizer
step and the moving average. Each step's losses and hits are added once to running sums kept as
tensors, which are read (one transfer to the host) only when a line is printed or the epoch ends.
An observer passed as ``on_step`` is called after every step with the ``TrainState``: the public
way to watch the loop (tests use it to stop a run at a chosen step).
"""

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

from . import distributed
from .errors import UserError
from .models import GoogLeNetOutputs
from .runtime import import_paddle

paddle = import_paddle()
F = paddle.nn.functional

AUX_WEIGHT = 0.3  # the paper's and the legacy train.py's weight of each auxiliary loss
HEADS = ("", "_aux1", "_aux2")  # metric-name suffixes of the main head and the two auxiliary heads


class NonFiniteLoss(UserError):
    """The loss became NaN or infinite; training stops before anything is overwritten (exit code 3)."""

    exit_code = 3


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


def topk_hits(logits, labels, k):
    """A 0-d int64 tensor: how many rows have their label among the ``k`` highest logits."""
    top = paddle.topk(logits, min(k, logits.shape[1]), axis=1)[1]
    return (top == labels.unsqueeze(1)).any(axis=1).astype("int64").sum()


class MetricSums:
    """Per-sample sums of losses and hits, kept as float64 tensors; ``totals()`` reads them all at once."""

    def __init__(self, sums=None):
        self.sums = {name: paddle.to_tensor(value, dtype="float64") for name, value in (sums or {}).items()}

    def add(self, values):
        """Add ``{name: tensor or number}`` to the sums."""
        for name, value in values.items():
            value = value.astype("float64") if isinstance(value, paddle.Tensor) else paddle.to_tensor(value, dtype="float64")
            self.sums[name] = self.sums[name] + value if name in self.sums else value

    def totals(self):
        """``{name: float}``, with one transfer from the device."""
        names = sorted(self.sums)
        if not names:
            return {}
        return dict(zip(names, paddle.stack([self.sums[name].reshape([]) for name in names]).numpy().tolist()))


def averages(totals, all_ranks=False):
    """Per-sample averages of ``MetricSums.totals()`` (summed over the ranks first if ``all_ranks``)."""
    names = sorted(totals)
    values = distributed.all_reduce_sum([totals[name] for name in names]) if all_ranks else [totals[name] for name in names]
    summed = dict(zip(names, values))
    count = max(summed.pop("count", 0.0), 1.0)
    return {name: value / count for name, value in summed.items()}


def difference(later, earlier):
    """``later - earlier`` for every name of two ``totals()``."""
    return {name: value - earlier.get(name, 0.0) for name, value in later.items()}


def batch_metrics(heads, losses, labels):
    """One step's sums: the sample count, and each head's summed loss and top-1 hits (tensors, no host sync)."""
    n = labels.shape[0]
    values = {"count": n}
    for suffix, logits in heads.items():
        values[f"loss{suffix}"] = losses[suffix].detach() * n
        values[f"top1{suffix}"] = topk_hits(logits.detach(), labels, 1)
    return values


@dataclass
class Loop:
    """What ``train_one_epoch`` works with besides the data: the model, its optimizer, the run's fixed
    settings, and the observers (the progress line and ``on_step``)."""

    model: object  # the network to train (``paddle.DataParallel``-wrapped in a multi-process run)
    optimizer: object
    scheduler: object  # schedule.TrainingSchedule
    precision: object  # device.Precision
    epochs: int
    aux_weight: float
    label_smoothing: float
    log_interval: int
    world_size: int
    log: Callable  # log(state, averages of the interval, lr, img/s, eta seconds): prints and logs a progress line
    stop_requested: Callable  # returns True after SIGINT/SIGTERM (on this rank)
    ema: object = None  # ema.ModelEMA, updated after every optimizer step
    on_step: Optional[Callable] = None  # called with the TrainState after every step


def train_one_epoch(loop, loader, state):
    """Train until the loader is exhausted or a stop is requested; return (the epoch's averages, stopped).

    Updates ``state`` (steps, and at the end or on a stop the running sums) in place, so that a
    checkpoint written after an interruption resumes exactly here.
    """
    loop.model.train()
    sums = MetricSums(state.epoch_sums)
    progress = _Progress(loop, len(loader), sums.totals())
    skipped, stopped = 0, False
    for images, labels, dropped in loader:
        skipped += int(dropped)
        if labels.shape[0] == 0:
            continue
        stopped = not _train_step(loop, images, labels.reshape([-1]).astype("int64"), state, sums)
        if stopped:  # this batch is not trained on; a resume starts with it
            break
        progress.after_step(state, sums, loop.scheduler.last_lr, labels.shape[0])
        if loop.on_step is not None:
            loop.on_step(state)
    state.epoch_sums = sums.totals()
    return _epoch_metrics(state, sums, loop, progress, skipped), stopped


def _train_step(loop, images, labels, state, sums):
    """One optimizer step; False (and no step) when a stop was requested on any rank. Raises NonFiniteLoss."""
    with loop.precision.autocast():
        outputs = loop.model(images)
        total, heads, losses = classification_loss(outputs, labels, loop.aux_weight, loop.label_smoothing)
    loss_value = float(total)
    # One reduction for both checks keeps every rank on the same step (or they would wait forever).
    diverged, stop = distributed.all_reduce_sum([not math.isfinite(loss_value), loop.stop_requested()])
    if diverged:
        raise NonFiniteLoss(
            f"the training loss became {loss_value if not math.isfinite(loss_value) else 'non-finite'} at epoch "
            f"{state.epoch + 1}, step {state.step_in_epoch + 1} (global step {state.global_step + 1}) with learning "
            f"rate {loop.scheduler.last_lr:g}. Try a lower --lr (for example half of it); the last checkpoint was left untouched."
        )
    if stop:
        return False
    loop.scheduler.start_batch(labels.shape[0] * loop.world_size)
    loop.precision.backward_and_step(total, loop.optimizer)
    if loop.ema is not None:
        loop.ema.update()
    state.global_step += 1
    state.step_in_epoch += 1
    sums.add(batch_metrics(heads, losses, labels))
    return True


class _Progress:
    """The epoch's clock and the progress line every ``log_interval`` steps (and at the epoch's last step)."""

    def __init__(self, loop, batches, start_totals):
        self.loop, self.batches = loop, batches
        self.start = self.tick = time.time()
        self.images = 0
        self.interval_start = start_totals

    def after_step(self, state, sums, lr, batch):
        self.images += batch
        if state.step_in_epoch % self.loop.log_interval and state.step_in_epoch != self.batches:
            return
        now = time.time()
        totals = sums.totals()
        interval = averages(difference(totals, self.interval_start), all_ranks=True)
        images = (totals.get("count", 0.0) - self.interval_start.get("count", 0.0)) * self.loop.world_size
        step_seconds = (now - self.start) / max(state.step_in_epoch, 1)
        remaining = ((self.batches - state.step_in_epoch) + (self.loop.epochs - state.epoch - 1) * self.batches) * step_seconds
        self.loop.log(state, interval, lr, images / max(now - self.tick, 1e-9), remaining)
        self.interval_start, self.tick = totals, now

    def seconds(self):
        return time.time() - self.start


def _epoch_metrics(state, sums, loop, progress, skipped):
    seconds = progress.seconds()
    epoch = averages(sums.totals(), all_ranks=True)
    skipped = int(distributed.all_reduce_sum([skipped])[0])
    if skipped and distributed.is_main_process():
        print(f"warning: {skipped} unreadable image(s) skipped in epoch {state.epoch + 1} (see the messages above)", file=sys.stderr)
    metrics = {f"train_{name}": value for name, value in epoch.items()}
    img_per_s = progress.images * loop.world_size / max(seconds, 1e-9)
    metrics.update(lr=loop.scheduler.last_lr, seconds=seconds, img_per_s=img_per_s, skipped_images=skipped)
    return metrics


@paddle.no_grad()
def evaluate(model, loader, precision):
    """Loss, top-1, top-5 and top-1 error of the main head on a whole split, plus its probabilities and labels.

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
        sums.add({"count": n, "loss": F.cross_entropy(logits, labels) * n, "top1": topk_hits(logits, labels, 1),
                  "top5": topk_hits(logits, labels, 5)})
        probabilities.append(F.softmax(logits, axis=1).numpy())
        targets.append(labels.numpy())
    metrics = averages(sums.totals(), all_ranks=True)
    metrics["error"] = 1.0 - metrics["top1"]  # the legacy classification_error
    return metrics, distributed.concat_over_ranks(probabilities), distributed.concat_over_ranks(targets)
