"""Token counts of images, audio and video in a request, measured offline.

Images follow the Qwen-VL rule DashScope documents: round each side to a multiple of the patch
size F (28 for Qwen2.5-VL-based models, 32 for Qwen3-VL), clamp the pixel count to
[min, max] by scaling, then ``h * w / F**2`` tokens plus ``<|vision_start|>`` and
``<|vision_end|>``. A 450 x 450 image on a 28-px model is 16 x 16 + 2 = 258 tokens.

Sizes come from explicit ``width`` / ``height`` keys, a data URL or base64 string, or a local
file (read with Pillow, header only). A remote URL is never fetched: it counts as the largest
image the request allows, marked as an estimate. Audio is counted by duration and video by
sampled frames; DashScope has not published those rules, so they are always estimates.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import wave
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..base.errors import MediaError
from .messages import Part

VISION_PLACEHOLDER = {
    "image": "<|vision_start|><|image_pad|><|vision_end|>",
    "video": "<|vision_start|><|video_pad|><|vision_end|>",
    "audio": "",
}
#: Tokens of the placeholder the rendered prompt carries for one item of each kind.
PLACEHOLDER_TOKENS = {"image": 3, "video": 3, "audio": 0}


@dataclass(frozen=True)
class VisionRule:
    """The media parameters of one model (catalogue ``vision:`` entry; all overridable)."""

    patch: int = 28
    min_tokens: int = 4
    max_tokens: int = 1280
    max_tokens_highres: int = 16384
    audio_tokens_per_second: float = 25.0
    video_fps: float = 2.0
    video_temporal_patch: int = 2


@dataclass(frozen=True)
class MediaTokens:
    """Tokens one media item adds to the prompt (vision start/end included)."""

    kind: str
    tokens: int
    exact: bool
    note: str = ""


# Sides at or above this are far past every pixel limit; they are scaled down (keeping the
# aspect ratio, which alone decides the clamped size) so no float ever overflows.
_HUGE_SIDE = 1 << 30


def _show(value: Any) -> str:
    """A value for an error message, shortened (a 400-digit width stays readable)."""
    text = repr(value)
    return text if len(text) <= 24 else f"{text[:10]}...({len(text)} digits)"


def _dimension(value: Any, what: str) -> int:
    """A pixel count as a whole number >= 1, or a :class:`MediaError` saying why not."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MediaError(f"{what} must be a number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise MediaError(f"{what} must be a finite number, got {_show(value)}")
    if value < 1:
        raise MediaError(f"{what} must be at least 1, got {value!r}")
    return int(value)


def image_tokens(width: float, height: float, rule: VisionRule = VisionRule(), *,
                 high_resolution: bool = False, max_pixels: int | None = None,
                 min_pixels: int | None = None) -> int:
    """Tokens of one image of ``width`` x ``height`` pixels (vision start/end included).

    Any size is clamped to the model's pixel limits; a size that is not a finite positive
    number raises :class:`~qwen_meter.errors.MediaError`.
    """
    if isinstance(width, (int, float)) and not isinstance(width, bool) \
            and isinstance(height, (int, float)) and not isinstance(height, bool) \
            and (width <= 0 or height <= 0):
        raise MediaError(f"image size must be positive, got {width}x{height}")
    w, h = _dimension(width, "image width"), _dimension(height, "image height")
    f = rule.patch
    ceiling = rule.max_tokens_highres * f * f  # no request can raise a limit past this
    if max_pixels is None:
        max_pixels = (rule.max_tokens_highres if high_resolution else rule.max_tokens) * f * f
    max_pixels = min(_dimension(max_pixels, "max_pixels"), ceiling)
    min_pixels = rule.min_tokens * f * f if min_pixels is None \
        else min(_dimension(min_pixels, "min_pixels"), max_pixels)
    if max(w, h) >= _HUGE_SIDE:
        shrink = max(w, h) // _HUGE_SIDE + 1
        w, h = max(1, w // shrink), max(1, h // shrink)
    h_bar = max(f, round(h / f) * f)
    w_bar = max(f, round(w / f) * f)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(h * w / max_pixels)
        h_bar = max(f, math.floor(h / beta / f) * f)
        w_bar = max(f, math.floor(w / beta / f) * f)
        if h_bar * w_bar > max_pixels:
            # Extreme aspect ratios: the short side was lifted to one patch, so the long
            # side gives way and the limit still holds.
            if h_bar > w_bar:
                h_bar = max(f, max_pixels // w_bar // f * f)
            else:
                w_bar = max(f, max_pixels // h_bar // f * f)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (h * w))
        h_bar = math.ceil(h * beta / f) * f
        w_bar = math.ceil(w * beta / f) * f
    return h_bar * w_bar // (f * f) + 2


def _where(part: Part) -> str:
    return f"messages[{part.index}].content[{part.position}]"


def _reference(part: Part, kind: str) -> tuple[str | None, Mapping[str, Any]]:
    """(url-or-data, the mapping that may carry explicit size keys) of a media part."""
    source = part.source or {}
    for key in {"image": ("image_url", "image"), "audio": ("input_audio", "audio"),
                "video": ("video_url", "video")}[kind]:
        value = source.get(key)
        if isinstance(value, Mapping):
            ref = value.get("url", value.get("data"))
            return (ref if isinstance(ref, str) else None), {**source, **value}
        if isinstance(value, str):
            return value, source
    return None, source


def _is_remote(ref: str) -> bool:
    return ref.split(":", 1)[0].lower() in ("http", "https", "oss", "ftp")


def _read_bytes(ref: str, part: Part) -> bytes:
    if ref.startswith("data:"):
        header, _, payload = ref.partition(",")
        if ";base64" not in header:
            raise MediaError(f"{_where(part)}: only base64 data URLs are supported")
        ref = payload
    else:
        path = Path(ref[7:] if ref.startswith("file://") else ref)
        try:
            if path.is_file():
                return path.read_bytes()
        except OSError:
            pass
    try:
        return base64.b64decode(ref, validate=True)
    except (binascii.Error, ValueError):
        raise MediaError(f"{_where(part)}: not a readable file, data URL or base64 data") from None


def _explicit(meta: Mapping[str, Any], key: str, part: Part) -> float | None:
    value = meta.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0 \
            or (isinstance(value, float) and not math.isfinite(value)):
        raise MediaError(f"{_where(part)}: {key} must be a finite positive number, "
                         f"got {value!r}")
    return value


def image_size(part: Part) -> tuple[int, int] | None:
    """(width, height) of an image part, or None for a remote URL (never fetched)."""
    ref, meta = _reference(part, "image")
    width, height = _explicit(meta, "width", part), _explicit(meta, "height", part)
    if width and height:
        if width < 1 or height < 1:
            raise MediaError(f"{_where(part)}: image size must be at least 1x1, "
                             f"got {width}x{height}")
        return int(width), int(height)
    if ref is None:
        raise MediaError(f"{_where(part)}: image part has no url or data")
    if _is_remote(ref):
        return None
    data = _read_bytes(ref, part)
    if not data:
        raise MediaError(f"{_where(part)}: the image is empty (0 bytes)")
    try:
        from PIL import Image
    except ImportError:
        raise MediaError(f"{_where(part)}: reading image sizes needs Pillow "
                         '(pip install ".[images]"), or give width and height') from None
    size = _header_size(Image, data)
    if size is None:
        raise MediaError(f"{_where(part)}: unreadable image data (not an image format "
                         "Pillow knows)")
    return size


def _header_size(image_module: Any, data: bytes) -> tuple[int, int] | None:
    """(width, height) from the image header alone.

    ``Image.open`` refuses anything above ~179 megapixels as a decompression bomb, but only
    the header is read here and the model's rule clamps any size, so each format's header
    reader is run directly, as ``Image.open`` does, without that check.
    """
    image_module.init()
    for fmt in image_module.ID:
        factory, accept = image_module.OPEN[fmt]
        try:  # some accept checks unpack a fixed-size prefix: 1-3 bytes raise struct.error
            if accept is not None and not accept(data[:16]):
                continue
        except Exception:
            continue
        try:
            with factory(io.BytesIO(data), None) as img:
                width, height = img.size
        except Exception:  # Pillow raises many types; try the next format
            continue
        if width >= 1 and height >= 1:
            return int(width), int(height)
    return None


def _pixel_limits(meta: Mapping[str, Any], part: Part) -> tuple[int | None, int | None]:
    high = _explicit(meta, "max_pixels", part)
    low = _explicit(meta, "min_pixels", part)
    return (int(high) if high else None), (int(low) if low else None)


def measure_image(part: Part, rule: VisionRule, high_resolution: bool) -> MediaTokens:
    """Tokens of one image part."""
    _, meta = _reference(part, "image")
    max_pixels, min_pixels = _pixel_limits(meta, part)
    size = image_size(part)
    if size is None:
        f = rule.patch
        per_image = rule.max_tokens_highres if high_resolution else rule.max_tokens
        cap = min(max_pixels or per_image * f * f, rule.max_tokens_highres * f * f)
        return MediaTokens("image", cap // (f * f) + 2, False,
                           f"{_where(part)}: remote image not fetched; counted at its maximum")
    tokens = image_tokens(size[0], size[1], rule, high_resolution=high_resolution,
                          max_pixels=max_pixels, min_pixels=min_pixels)
    return MediaTokens("image", tokens, True)


def _wav_seconds(data: bytes, part: Part) -> float:
    try:
        with wave.open(io.BytesIO(data)) as wav:
            frames, rate = wav.getnframes(), wav.getframerate()
    except (wave.Error, EOFError, ValueError, OverflowError) as exc:
        raise MediaError(f"{_where(part)}: cannot read the audio's duration ({exc}); "
                         "give 'duration' in seconds") from None
    if rate <= 0:
        raise MediaError(f"{_where(part)}: the WAV header gives a frame rate of {rate}; "
                         "give 'duration' in seconds")
    return float(frames) / float(rate)


def _per_second(seconds: float, rate: float, part: Part, what: str) -> int:
    """ceil(seconds x rate) as a whole number, or a MediaError when it is not finite."""
    try:
        product = float(seconds) * rate
    except OverflowError:  # an int beyond any float
        product = math.inf
    if not math.isfinite(product):
        raise MediaError(f"{_where(part)}: {what} of {_show(seconds)} s is too long to count")
    return math.ceil(product)


def measure_audio(part: Part, rule: VisionRule) -> MediaTokens:
    """Tokens of one audio part: duration x tokens per second (an estimate)."""
    ref, meta = _reference(part, "audio")
    seconds = _explicit(meta, "duration", part)
    if seconds is None:
        if ref is None or _is_remote(ref):
            raise MediaError(f"{_where(part)}: audio duration unknown offline; "
                             "give 'duration' in seconds")
        seconds = _wav_seconds(_read_bytes(ref, part), part)
    tokens = _per_second(seconds, rule.audio_tokens_per_second, part, "audio")
    return MediaTokens("audio", tokens, False,
                       f"{_where(part)}: audio counted at {rule.audio_tokens_per_second:g} "
                       "tokens/s (rule not published)")


def measure_video(part: Part, rule: VisionRule, high_resolution: bool) -> MediaTokens:
    """Tokens of one video part (a list of frames, or a file with explicit size/duration)."""
    ref_value = (part.source or {}).get("video")
    if isinstance(ref_value, list) and ref_value:
        frames = len(ref_value)
        first = Part("image", source={"image": ref_value[0]}, index=part.index,
                     position=part.position)
        per_frame = measure_image(first, rule, high_resolution).tokens - 2
    else:
        _, meta = _reference(part, "video")
        width, height = _explicit(meta, "width", part), _explicit(meta, "height", part)
        seconds = _explicit(meta, "duration", part)
        if not (width and height and seconds):
            raise MediaError(f"{_where(part)}: a video needs width, height and duration "
                             "(or a list of frames) to be counted offline")
        fps = _explicit(meta, "fps", part) or rule.video_fps
        frames = max(1, _per_second(seconds, fps, part, "video"))
        per_frame = image_tokens(width, height, rule, high_resolution=high_resolution) - 2
    groups = math.ceil(frames / rule.video_temporal_patch)
    return MediaTokens("video", groups * per_frame + 2, False,
                       f"{_where(part)}: video counted as {frames} frames (rule not published)")


def measure(part: Part, rule: VisionRule, high_resolution: bool = False) -> MediaTokens:
    """Tokens of one media part of any kind."""
    if part.kind == "image":
        return measure_image(part, rule, high_resolution)
    if part.kind == "audio":
        return measure_audio(part, rule)
    return measure_video(part, rule, high_resolution)
