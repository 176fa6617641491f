"""Image decoding and the preprocessing shared by training and inference.

Everything here works on NumPy arrays and needs neither Paddle nor a dataset, so ``infer.py`` can
rebuild the exact evaluation preprocessing from the ``preprocess`` dict stored in a checkpoint.

Images are HWC ``uint8`` RGB arrays until the last step, which turns them into CHW ``float32``
normalised with ``(pixel * scale - mean) / std`` in the preprocessing's channel order. OpenCV
decodes and resizes (EXIF orientation tags are ignored). Two preprocessings exist:

* this project's (``make_preprocess``): RGB, pixels scaled to 0..1 and normalised by a mean and
  standard deviation, short side resized keeping the aspect ratio (bilinear), centre crop;
* the legacy ``paddle.v2`` inference one (``legacy_preprocess``), for models converted from
  ``params_pass_N.tar.gz`` archives: BGR, values 0..255, an optional per-channel mean, short side
  to 256 bicubic *with the legacy resize's width and height swapped* on non-square images
  (``resize: legacy_swapped``; ``short_side`` is the corrected resize), centre crop 224.
"""

import cv2
import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_RATIO = 256 / 224  # short side before cropping, relative to the crop (the legacy 256 -> 224)
CHANNEL_ORDERS = ("RGB", "BGR")
RESIZES = ("short_side", "legacy_swapped")
LEGACY_FLOWERS_MEAN = (103.94, 116.78, 123.68)  # B, G, R: the mean the later paddle.v2 flowers reader subtracted

_CV2_FILTERS = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST}
_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"  # markers; entropy-coded data never contains 0xFFD9


class ImageReadError(Exception):
    """An image file that cannot be read or decoded; ``str()`` names the path and the reason."""

    def __init__(self, path, reason):
        super().__init__(str(path), reason)  # both in args, so the exception pickles across processes
        self.path = str(path)
        self.reason = reason

    def __str__(self):
        return f"cannot read image {self.path}: {self.reason}"


def load_image(path):
    """Read an image file as an HWC ``uint8`` RGB array.

    Grayscale, palette, alpha (dropped, not composited), CMYK and 16-bit images all come back as
    3-channel 8-bit RGB. Raises ``ImageReadError`` for a missing, empty or undecodable file.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise ImageReadError(path, exc.strerror or str(exc)) from None
    if not data:
        raise ImageReadError(path, "the file is empty")
    if data.startswith(_JPEG_START) and data.rfind(_JPEG_END) == -1:  # older OpenCV decodes the part it has
        raise ImageReadError(path, "truncated JPEG (no end-of-image marker)")
    image = _decode(data)
    if image is None:
        raise ImageReadError(path, f"not a decodable image ({len(data)} bytes)")
    return image


def _decode(data):
    flags = cv2.IMREAD_COLOR_RGB if hasattr(cv2, "IMREAD_COLOR_RGB") else cv2.IMREAD_COLOR
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), flags | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error:
        return None
    if image is None or image.ndim != 3:
        return None
    if flags == cv2.IMREAD_COLOR:  # OpenCV < 4.11 decodes to BGR only
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return image


def make_preprocess(image_size, mean=IMAGENET_MEAN, std=IMAGENET_STD, resize_size=None, *, channel_order="RGB",
                    scale=1 / 255, interpolation="bilinear", resize="short_side"):
    """The preprocessing description stored in checkpoints and export metadata.

    Args:
        image_size: side of the square crop fed to the network.
        mean, std: per-channel statistics in ``channel_order`` on the ``pixel * scale`` range.
        resize_size: short side before cropping; default ``round(image_size * 256 / 224)``.
        channel_order: ``"RGB"``, or ``"BGR"`` as OpenCV-based legacy code fed its models.
        scale: factor applied to the 0..255 pixel values before the mean is subtracted.
        interpolation: ``"bilinear"``, ``"bicubic"`` or ``"nearest"``, for the resize.
        resize: ``"short_side"`` (aspect ratio kept) or ``"legacy_swapped"`` (``resize_legacy_swapped``).

    Returns a plain dict (JSON-serialisable) holding everything inference needs.
    """
    image_size = int(image_size)
    resize_size = round(image_size * RESIZE_RATIO) if resize_size is None else int(resize_size)
    if image_size < 1 or resize_size < image_size:
        raise ValueError(f"need 1 <= image_size <= resize_size, got image_size={image_size}, resize_size={resize_size}")
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"mean and std need 3 values each and std > 0, got mean={mean}, std={std}")
    for name, value, allowed in (("channel_order", channel_order, CHANNEL_ORDERS), ("resize", resize, RESIZES),
                                 ("interpolation", interpolation, tuple(_CV2_FILTERS))):
        if value not in allowed:
            raise ValueError(f"unsupported {name} {value!r}; expected one of {allowed}")
    return {
        "image_size": image_size,
        "resize_size": resize_size,
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "channel_order": channel_order,
        "scale": float(scale),
        "interpolation": interpolation,
        "resize": resize,
    }


def legacy_preprocess(mean=None, corrected_resize=False):
    """The legacy ``paddle.v2`` ``infer.py`` preprocessing (``load_and_transform(path, 256, 224, False)``).

    BGR, values 0..255 (no scaling, no standard deviation), ``mean`` (B, G, R) subtracted when given
    (the later flowers reader subtracted ``LEGACY_FLOWERS_MEAN``; the earlier one none), the short
    side resized to 256 bicubic, with the legacy resize's swapped width and height unless
    ``corrected_resize``, then the centre 224×224 crop at the floor offsets.
    """
    return make_preprocess(224, (0.0, 0.0, 0.0) if mean is None else mean, (1.0, 1.0, 1.0), 256, channel_order="BGR",
                           scale=1.0, interpolation="bicubic", resize="short_side" if corrected_resize else "legacy_swapped")


def short_side_shape(height, width, size):
    """``(height, width)`` with the shorter side ``size`` and the aspect ratio kept (long side floored)."""
    if height <= width:
        return size, max(size, width * size // height)
    return max(size, height * size // width), size


def resize_short_side(image, size, interpolation="bilinear"):
    """Resize so the shorter side is ``size``, keeping the aspect ratio (long side floored)."""
    height, width = image.shape[:2]
    if min(height, width) == size:
        return image
    new_height, new_width = short_side_shape(height, width, size)
    return cv2.resize(image, (new_width, new_height), interpolation=_CV2_FILTERS[interpolation])


def resize_legacy_swapped(image, size, interpolation="bicubic"):
    """The legacy ``paddle.v2.image.resize_short``, bug included (fixed upstream in July 2018).

    It computed the new height and width as ``resize_short_side`` does (Python 2 floor division) but
    passed them to ``cv2.resize`` as ``(height, width)`` where OpenCV expects ``(width, height)``: the
    short side is ``size`` but a non-square image comes out with its aspect ratio inverted (a 500×667
    photo becomes 341×256 rather than 256×341). Square images are unaffected.
    """
    height, width = image.shape[:2]
    if height > width:
        new_height, new_width = size * height // width, size
    else:
        new_height, new_width = size, size * width // height
    return cv2.resize(image, (new_height, new_width), interpolation=_CV2_FILTERS[interpolation])


class Normalize:
    """HWC uint8 (RGB) -> CHW float32 ``(pixel * scale - mean) / std`` in the configured channel order."""

    def __init__(self, preprocess):
        order = preprocess.get("channel_order", "RGB")
        if order not in CHANNEL_ORDERS:
            raise ValueError(f"unsupported channel_order {order!r}; expected one of {CHANNEL_ORDERS}")
        std = np.asarray(preprocess["std"], np.float32)
        self.reverse_channels = order == "BGR"
        self.gain = (np.float32(preprocess["scale"]) / std).reshape(3, 1, 1)
        self.offset = (-np.asarray(preprocess["mean"], np.float32) / std).reshape(3, 1, 1)

    def into(self, image, out):
        """Write the normalised ``image`` into the CHW float32 array ``out`` (e.g. a slot of a batch)."""
        if self.reverse_channels:
            image = image[:, :, ::-1]
        np.multiply(image.transpose(2, 0, 1), self.gain, out=out)
        out += self.offset
        return out

    def __call__(self, image):
        return self.into(image, np.empty((3, *image.shape[:2]), np.float32))


class _Transform:
    """The geometric part (``geometry``: HWC uint8 in, HWC uint8 crop out), then ``normalize``."""

    def __init__(self, preprocess):
        self.image_size = int(preprocess["image_size"])
        self.resize_size = int(preprocess["resize_size"])
        self.interpolation = preprocess.get("interpolation", "bilinear")
        if self.interpolation not in _CV2_FILTERS:
            raise ValueError(f"unsupported interpolation {self.interpolation!r}; expected one of {tuple(_CV2_FILTERS)}")
        resize = preprocess.get("resize", "short_side")  # checkpoints from before the legacy resize have none
        if resize not in RESIZES:
            raise ValueError(f"unsupported resize {resize!r}; expected one of {RESIZES}")
        self.resize = resize_legacy_swapped if resize == "legacy_swapped" else resize_short_side
        self.normalize = Normalize(preprocess)

    def _resize(self, image):
        return self.resize(image, self.resize_size, self.interpolation)

    def _crop(self, image, top, left):
        return image[top : top + self.image_size, left : left + self.image_size]


class EvalTransform(_Transform):
    """Resize the short side to ``resize_size``, centre-crop ``image_size``, normalise."""

    def geometry(self, image):
        image = self._resize(image)
        height, width = image.shape[:2]
        return self._crop(image, (height - self.image_size) // 2, (width - self.image_size) // 2)

    def __call__(self, image):
        return self.normalize(self.geometry(image))


class TrainTransform(_Transform):
    """Resize the short side, random ``image_size`` crop, optional horizontal flip, normalise.

    All randomness comes from the ``rng`` argument, so a sample's augmentation is reproducible.
    """

    def __init__(self, preprocess, hflip):
        super().__init__(preprocess)
        self.hflip = bool(hflip)

    def geometry(self, image, rng):
        image = self._resize(image)
        height, width = image.shape[:2]
        top = int(rng.integers(0, height - self.image_size + 1))
        left = int(rng.integers(0, width - self.image_size + 1))
        image = self._crop(image, top, left)
        if self.hflip and rng.random() < 0.5:
            image = image[:, ::-1]
        return image

    def __call__(self, image, rng):
        return self.normalize(self.geometry(image, rng))


def build_eval_transform(preprocess):
    """``f(HWC uint8 RGB) -> CHW float32``: resize short side, centre crop, normalise."""
    return EvalTransform(preprocess)


def build_train_transform(preprocess, hflip):
    """``f(HWC uint8 RGB, np.random.Generator) -> CHW float32``: resize, random crop, flip, normalise."""
    return TrainTransform(preprocess, hflip)


def denormalize(chw, preprocess):
    """Undo the normalisation of one CHW image: back to HWC ``uint8`` RGB (for image logging)."""
    chw = np.asarray(chw, np.float32)
    mean = np.asarray(preprocess["mean"], np.float32).reshape(3, 1, 1)
    std = np.asarray(preprocess["std"], np.float32).reshape(3, 1, 1)
    pixels = (chw * std + mean) / np.float32(preprocess["scale"])
    hwc = np.clip(np.rint(pixels), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    if preprocess.get("channel_order", "RGB") == "BGR":
        hwc = hwc[:, :, ::-1]
    return np.ascontiguousarray(hwc)


def resized_preprocess(preprocess, image_size):
    """``preprocess`` for another crop size, keeping its resize/crop ratio and everything else."""
    if image_size is None or image_size == preprocess["image_size"]:
        return dict(preprocess)
    ratio = preprocess["resize_size"] / preprocess["image_size"]
    return dict(preprocess, image_size=int(image_size), resize_size=max(int(image_size), round(image_size * ratio)))


def describe_preprocess(preprocess):
    """A phrase for the log, e.g. ``RGB, (pixels/255 - mean) / std, short side 256 bilinear, centre crop 224``."""
    scale = "pixels/255" if abs(preprocess["scale"] * 255 - 1) < 1e-9 else f"pixels*{preprocess['scale']:g}"
    plain = not any(preprocess["mean"]) and all(s == 1 for s in preprocess["std"])
    values = scale if plain else f"({scale} - {[round(m, 3) for m in preprocess['mean']]}) / {[round(s, 3) for s in preprocess['std']]}"
    resize = "legacy swapped resize" if preprocess.get("resize") == "legacy_swapped" else "short side"
    return (f"{preprocess.get('channel_order', 'RGB')}, {values}, {resize} {preprocess['resize_size']} "
            f"{preprocess.get('interpolation', 'bilinear')}, centre crop {preprocess['image_size']}")
