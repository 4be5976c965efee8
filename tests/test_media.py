"""Images, audio and video in chat requests."""

from __future__ import annotations

import base64
import io
import wave

import pytest
from hypothesis import given
from hypothesis import strategies as st

import qwen_meter as qm
from qwen_meter.tokens.media import VisionRule, image_tokens

PIL = pytest.importorskip("PIL.Image")

#: A Qwen2.5-VL-era snapshot: 28-px patches, the rule behind the published 258-token figure.
VL28 = "qwen-vl-max-2024-12-30"


def png_bytes(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    PIL.new("RGB", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def image_message(url: str, text: str = "描述这张图") -> list[dict]:
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                         {"type": "text", "text": text}]}]


def test_published_image_figure():
    # A 450 x 450 image was billed 258 tokens on a 28-px Qwen-VL model.
    assert image_tokens(450, 450, VisionRule(patch=28)) == 258


@pytest.mark.parametrize(("model", "small", "medium"), [
    # The API reference's pixel limits: Qwen3-VL, 3.5 and 3.6 scale an image up to at least
    # 65536 px (256 x 256 here: 8 x 8 tokens of 32 px); the 32-px qwen-vl names (-latest,
    # 0813) to 4096 px (100 x 100 rounds to 96 x 96: 3 x 3); 28-px models to 3136 px
    # (112 x 112: 4 x 4). A 450 x 450 image is 14 x 14 tokens at 32 px, 16 x 16 at 28 px.
    ("qwen3-vl-plus", 66, 198), ("qwen3-vl-flash", 66, 198), ("qwen3.6-plus", 66, 198),
    ("qwen3.5-plus", 66, 198), ("qwen3-vl-8b-instruct", 66, 198),
    ("qwen-vl-max", 11, 198), ("qwen-vl-max-latest", 11, 198), ("qwen-vl-plus-0815", 11, 198),
    ("qwen-vl-max-2024-11-19", 18, 258), ("qvq-max", 18, 258),
])
def test_each_model_sizes_images_by_its_published_pixel_limits(model, small, medium):
    for (side, expected) in ((100, small), (450, medium)):
        url = "data:image/png;base64," + base64.b64encode(png_bytes(side, side)).decode()
        count = qm.count_messages(image_message(url), model)
        # a name only a rule matches (qwen3-vl-8b-instruct) is an estimate, as the meter says
        listed = qm.resolve(model).matched_rule is None
        assert (count.image_tokens, count.exact) == (expected, listed), (model, side)


@given(st.integers(1, 20000), st.integers(1, 20000), st.sampled_from([28, 32]), st.booleans())
def test_image_tokens_stay_within_limits(width, height, patch, high):
    rule = VisionRule(patch=patch)
    tokens = image_tokens(width, height, rule, high_resolution=high)
    cap = rule.max_tokens_highres if high else rule.max_tokens
    assert rule.min_tokens + 2 <= tokens <= cap + 2


def test_data_url_image_is_measured_exactly():
    url = "data:image/png;base64," + base64.b64encode(png_bytes(450, 450)).decode()
    count = qm.count_messages(image_message(url), VL28)
    assert count.image_tokens == 258 and count.exact
    text_only = qm.count_messages([{"role": "user", "content": "描述这张图"}], VL28)
    assert count.text_tokens == text_only.tokens
    assert count.tokens == text_only.tokens + 258
    assert count.tokens == count.text_tokens + count.image_tokens


def test_local_file_and_native_image_key(tmp_path):
    path = tmp_path / "pic.png"
    path.write_bytes(png_bytes(900, 600))
    native = [{"role": "user", "content": [{"image": f"file://{path}"}, {"text": "hi"}]}]
    openai = image_message(str(path), "hi")
    a = qm.count_messages(native, "qwen3-vl-plus")
    b = qm.count_messages(openai, "qwen3-vl-plus")
    assert a.tokens == b.tokens and a.image_tokens == image_tokens(900, 600, VisionRule(32))


def test_explicit_size_and_high_resolution():
    part = {"type": "image_url", "image_url": {"url": "https://example.com/x.png",
                                               "width": 4000, "height": 3000}}
    messages = [{"role": "user", "content": [part]}]
    normal = qm.count_messages(messages, VL28)
    high = qm.count_messages(messages, VL28, high_resolution=True)
    assert normal.exact and normal.image_tokens <= 1282 < high.image_tokens


def test_remote_image_is_an_estimate_and_never_fetched():
    count = qm.count_messages(image_message("https://example.invalid/cat.jpg"), VL28)
    assert not count.exact
    assert count.image_tokens == 1282
    assert any("remote image" in note for note in count.notes)


def test_unreadable_image_data():
    with pytest.raises(qm.MediaError, match=r"messages\[0\]\.content\[0\]"):
        qm.count_messages(image_message("data:image/png;base64,bm90IGFuIGltYWdl"), VL28)
    with pytest.raises(qm.MediaError):
        qm.count_messages(image_message("/no/such/file.png"), VL28)


def wav_base64(seconds: float, rate: int = 16000) -> str:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(b"\0\0" * int(seconds * rate))
    return base64.b64encode(buffer.getvalue()).decode()


def test_audio_by_duration():
    part = {"type": "input_audio", "input_audio": {"data": wav_base64(2.0), "format": "wav"}}
    count = qm.count_messages([{"role": "user", "content": [part]}], "qwen-omni-turbo")
    assert count.audio_tokens == 50 and not count.exact
    explicit = {"type": "input_audio", "input_audio": {"data": "https://x/a.mp3",
                                                       "duration": 3}}
    count = qm.count_messages([{"role": "user", "content": [explicit]}], "qwen-omni-turbo")
    assert count.audio_tokens == 75
    with pytest.raises(qm.MediaError, match="duration"):
        qm.count_messages([{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "https://x/a.mp3"}}]}],
            "qwen-omni-turbo")


def test_video_as_frames():
    frame = "data:image/png;base64," + base64.b64encode(png_bytes(448, 448)).decode()
    video = {"video": [frame] * 4}
    count = qm.count_messages([{"role": "user", "content": [video, {"text": "?"}]}],
                              VL28)
    assert count.video_tokens == 2 * 256 + 2 and not count.exact
    with pytest.raises(qm.MediaError, match="width, height and duration"):
        qm.count_messages([{"role": "user", "content": [
            {"type": "video_url", "video_url": {"url": "https://x/v.mp4"}}]}], VL28)


def test_image_on_model_without_media_rule_is_not_exact():
    url = "data:image/png;base64," + base64.b64encode(png_bytes(64, 64)).decode()
    count = qm.count_messages(image_message(url), "qwen-plus")
    assert not count.exact and any("no media rule" in n for n in count.notes)


# --- arithmetic that cannot overflow (issue #14) ---------------------------------------------

def _png_header(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan"), 0, -3, 0.5, "9",
                                 True])
def test_bad_sizes_are_media_errors(bad):
    with pytest.raises(qm.MediaError):
        image_tokens(bad, 100, VisionRule(patch=28))
    part = {"type": "image_url", "image_url": {"url": "https://x/y.png"}, "width": bad,
            "height": 100}
    with pytest.raises(qm.MediaError):
        qm.count_messages([{"role": "user", "content": [part]}], VL28)


@pytest.mark.parametrize("huge", [1e308, 10**400, 2**64])
def test_huge_sizes_clamp_to_the_limit(huge):
    rule = VisionRule(patch=28)
    for width, height in ((huge, huge), (huge, 1), (1, huge), (huge, 450)):
        tokens = image_tokens(width, height, rule)
        assert rule.min_tokens + 2 <= tokens <= rule.max_tokens + 2
    assert image_tokens(huge, huge, rule, max_pixels=10**400) <= rule.max_tokens_highres + 2


def test_a_20000_square_header_is_clamped_not_refused():
    url = "data:image/png;base64," + base64.b64encode(_png_header(20000, 20000)).decode()
    count = qm.count_messages(image_message(url), VL28)
    assert count.exact and count.image_tokens == image_tokens(20000, 20000,
                                                              qm.resolve(VL28).vision)


@pytest.mark.parametrize("duration", [float("inf"), float("nan"), 1e308, 10**400])
def test_unbounded_durations_are_media_errors(duration):
    for part in ({"type": "input_audio", "input_audio": {"data": "x", "duration": duration}},
                 {"type": "video_url", "video_url": {"url": "https://x/v.mp4"}, "width": 640,
                  "height": 480, "duration": duration}):
        with pytest.raises(qm.MediaError):
            qm.count_messages([{"role": "user", "content": [part]}], "qwen-omni-turbo")


def test_wav_frame_rate_zero_is_a_media_error():
    import wave

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\0\0" * 800)
    data = bytearray(buffer.getvalue())
    data[24:28] = b"\0\0\0\0"  # the header's sample rate
    part = {"type": "input_audio", "input_audio": {"data": base64.b64encode(bytes(data)).decode()}}
    with pytest.raises(qm.MediaError, match="frame rate"):
        qm.count_messages([{"role": "user", "content": [part]}], "qwen-omni-turbo")
