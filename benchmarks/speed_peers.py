"""The implementations ``bench_speed.py`` measures, its *paths*.

Each path is a function ``(model name, batch, image size, classes) -> (train_step, eval_step)`` that
builds one model with random input, or returns None when it does not implement that model. A train
step is forward, loss (for GoogLeNet the main loss + 0.3 x each auxiliary loss), backward and a
Momentum step with L2 decay; an eval step is a forward pass without gradients. Each step ends by
reading a value back to the host, so it returns once the work is done. The dygraph paths also take
``wrap`` (e.g. ``paddle.DataParallel``), applied to the model before it runs.

Nothing here imports Paddle or PyTorch until a path is built; PyTorch is optional, only for the
``torch`` paths, and never a dependency of paddle-googlenet.
"""

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REFERENCE = "vision"  # the path every ratio is taken to
VISION_224_ONLY = ("googlenet", "alexnet")  # paddle.vision's fc sizes are fixed for 224x224 input


def import_paddle():
    """Set the thread count (paddle_googlenet.configure_threads), then import Paddle."""
    sys.path.insert(0, str(REPO))
    import paddle_googlenet

    paddle_googlenet.configure_threads()  # before Paddle is imported (a no-op once it is)
    return paddle_googlenet.import_paddle()


def aux_weight():
    """The weight of each GoogLeNet auxiliary loss in train.py (paddle_googlenet.engine.AUX_WEIGHT)."""
    import_paddle()
    from paddle_googlenet.engine import AUX_WEIGHT

    return AUX_WEIGHT


# ----------------------------------------------------------------------------------------------
# Paddle dygraph: ours, ours-plain, vision
# ----------------------------------------------------------------------------------------------

def paddle_batch(paddle, batch, image_size, num_classes):
    images = paddle.randn([batch, 3, image_size, image_size], dtype="float32")
    labels = paddle.randint(0, num_classes, [batch], dtype="int64")
    return images, labels


def paddle_loss(paddle, outputs, labels):
    """Cross-entropy of the main head plus 0.3 x each auxiliary head's (GoogLeNet returns three heads)."""
    F = paddle.nn.functional
    if isinstance(outputs, (tuple, list)):
        main, *aux = outputs
        return F.cross_entropy(main, labels) + aux_weight() * sum(F.cross_entropy(a, labels) for a in aux)
    return F.cross_entropy(outputs, labels)


def dygraph_steps(paddle, model, images, labels, wrap=None):
    """Train and eval steps of a dygraph model (``wrap``: e.g. ``paddle.DataParallel``)."""
    runner = wrap(model) if wrap else model
    optimizer = paddle.optimizer.Momentum(0.001, 0.9, parameters=model.parameters(), weight_decay=paddle.regularizer.L2Decay(5e-4))

    def train_step():
        model.train()
        loss = paddle_loss(paddle, runner(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        return float(loss)

    @paddle.no_grad()
    def eval_step():
        model.eval()
        outputs = runner(images)  # paddle.vision's GoogLeNet returns its three heads in eval mode too
        return float((outputs[0] if isinstance(outputs, (tuple, list)) else outputs).mean())

    return train_step, eval_step


def ours(name, batch, image_size, num_classes, wrap=None, plain=False):
    """Our model as train.py trains it: on the CPU with the CPU-training layers, unless ``plain``."""
    paddle = import_paddle()
    from paddle_googlenet.cpu_training import use_cpu_training_layers
    from paddle_googlenet.models import get_model

    model = get_model(name, num_classes=num_classes)
    if not plain and paddle.device.get_device() == "cpu":
        use_cpu_training_layers(model)
    return dygraph_steps(paddle, model, *paddle_batch(paddle, batch, image_size, num_classes), wrap)


def ours_plain(name, batch, image_size, num_classes, wrap=None):
    """Our plain model, as ``train.py --plain-layers`` trains it."""
    return ours(name, batch, image_size, num_classes, wrap, plain=True)


def vision(name, batch, image_size, num_classes, wrap=None):
    """``paddle.vision.models.<name>``: the reference."""
    if name in VISION_224_ONLY and image_size != 224:
        print(f"note: paddle.vision's {name} accepts only 224x224 input; the vision path is skipped", file=sys.stderr)
        return None
    paddle = import_paddle()
    model = getattr(paddle.vision.models, name)(num_classes=num_classes)
    return dygraph_steps(paddle, model, *paddle_batch(paddle, batch, image_size, num_classes), wrap)


# ----------------------------------------------------------------------------------------------
# PyTorch: our GoogLeNet architecture, eager (optional peer)
# ----------------------------------------------------------------------------------------------

def torch_steps(name, batch, image_size, num_classes, channels_last=False):
    """PyTorch GoogLeNet of our architecture (the only torch model here), eager, optionally channels_last."""
    if name != "googlenet":
        return None
    import torch

    device = "cuda" if torch.cuda.is_available() and os.environ.get("BENCH_DEVICE") == "gpu" else "cpu"
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = torch_googlenet(num_classes).to(device=device, memory_format=memory_format)
    images = torch.randn(batch, 3, image_size, image_size, device=device).to(memory_format=memory_format)
    labels = torch.randint(0, num_classes, (batch,), device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9, weight_decay=5e-4)
    weight = aux_weight()

    def train_step():
        model.train()
        main, aux1, aux2 = model(images)
        F = torch.nn.functional
        loss = F.cross_entropy(main, labels) + weight * (F.cross_entropy(aux1, labels) + F.cross_entropy(aux2, labels))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach().item()

    @torch.no_grad()
    def eval_step():
        model.eval()
        return float(model(images).float().mean())

    return train_step, eval_step


def torch_cl(name, batch, image_size, num_classes):
    return torch_steps(name, batch, image_size, num_classes, channels_last=True)


def torch_googlenet(num_classes):
    """Our legacy GoogLeNet in PyTorch: ceil-mode pools, ReLU on every conv, 2048-wide aux fc, both aux heads."""
    import torch
    from torch import nn

    def conv(cin, cout, k, stride=1, padding=0):
        return nn.Sequential(nn.Conv2d(cin, cout, k, stride, padding), nn.ReLU(inplace=True))

    def pool(k, s, padding=0):
        return nn.MaxPool2d(k, s, padding, ceil_mode=True)

    class Inception(nn.Module):
        def __init__(self, cin, c1, c3r, c3, c5r, c5, proj):
            super().__init__()
            self.b1 = conv(cin, c1, 1)
            self.b3 = nn.Sequential(conv(cin, c3r, 1), conv(c3r, c3, 3, padding=1))
            self.b5 = nn.Sequential(conv(cin, c5r, 1), conv(c5r, c5, 5, padding=2))
            self.bp = nn.Sequential(pool(3, 1, 1), conv(cin, proj, 1))

        def forward(self, x):
            return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1)

    class Aux(nn.Module):
        def __init__(self, cin):
            super().__init__()
            self.features = nn.Sequential(nn.AvgPool2d(5, 3, ceil_mode=True), conv(cin, 128, 1), nn.Flatten())
            self.fc1 = nn.Sequential(nn.Linear(2048, 1024), nn.ReLU(inplace=True), nn.Dropout(0.7))
            self.fc2 = nn.Linear(1024, num_classes)

        def forward(self, x):
            if x.shape[-1] != 14:
                x = nn.functional.adaptive_avg_pool2d(x, 4)
                return self.fc2(self.fc1(self.features[1:](x)))
            return self.fc2(self.fc1(self.features(x)))

    import_paddle()
    from paddle_googlenet.models.googlenet import INCEPTION_CONFIGS

    class GoogLeNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(conv(3, 64, 7, 2, 3), pool(3, 2), conv(64, 64, 1), conv(64, 192, 3, padding=1), pool(3, 2))
            c = INCEPTION_CONFIGS
            self.stage3 = nn.Sequential(Inception(*c["ince3a"]), Inception(*c["ince3b"]), pool(3, 2), Inception(*c["ince4a"]))
            self.stage4 = nn.Sequential(Inception(*c["ince4b"]), Inception(*c["ince4c"]), Inception(*c["ince4d"]))
            self.stage5 = nn.Sequential(Inception(*c["ince4e"]), pool(3, 2), Inception(*c["ince5a"]), Inception(*c["ince5b"]))
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.4), nn.Linear(1024, num_classes))
            self.aux1, self.aux2 = Aux(512), Aux(528)

        def forward(self, x):
            x = self.stage3(self.stem(x))
            aux1 = self.aux1(x) if self.training else None
            x = self.stage4(x)
            aux2 = self.aux2(x) if self.training else None
            logits = self.head(self.stage5(x))
            return (logits, aux1, aux2) if self.training else logits

    return GoogLeNet()


# name: (factory, description). Experimental paths whose experiments are over were dropped; what they
# measured is recorded in benchmarks/NOTES.md.
PATHS = {
    "ours": (ours, "paddle-googlenet, dygraph, as train.py trains on the CPU (CPU-training layers)"),
    "ours-plain": (ours_plain, "paddle-googlenet, dygraph, the plain models (train.py --plain-layers)"),
    "vision": (vision, "paddle.vision.models, dygraph (the reference)"),
    "torch": (torch_steps, "PyTorch eager, our GoogLeNet architecture (googlenet only)"),
    "torch-cl": (torch_cl, "PyTorch eager, channels_last (googlenet only)"),
}
DYGRAPH_PATHS = ("ours", "ours-plain", "vision")  # the paths that take ``wrap`` (data-parallel runs)
