"""The fast count of a plain text chat: per-turn counts from a cache, no rendering.

:func:`_fast_count` answers the common request (text turns of system, user and assistant,
no tools or media) from turn counts remembered on the model's setup, and resumes a counted
conversation that grew by a turn; it gives up (None) whenever the full renderer is needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from ..tokens.chat import IM_END, IM_START, is_tool_response, render_assistant
from ..tokens.messages import Message, Part

if TYPE_CHECKING:
    from .model_setup import _Setup


class _ChatMemo(NamedTuple):
    """Where a counted conversation's scan ended, so the same conversation with turns added
    resumes there instead of looking at every turn again."""

    #: copies of the messages scanned (a later list must equal them to resume)
    messages: list[dict[str, Any]]
    #: the sum of their turn counts, the index of the last user turn, and the counts of
    #: the turns after it
    total: int
    last_user: int
    since_user: tuple[int, ...]


_PLAIN_KEYS = frozenset(("role", "content", "name"))
_PLAIN_ROLES = frozenset(("system", "user", "assistant"))
_CACHE_LIMIT = 1 << 16
_CHATS_LIMIT = 64
#: conversations of at least this many messages are remembered for a resumed re-count
_REMEMBER_FROM = 8


def _fast_count(messages: Any, setup: _Setup, enable_thinking: bool | None) -> int | None:
    """The prompt tokens of a plain text conversation without rendering it, or None when the
    request needs the full renderer (tools, media, reasoning, partial, tool turns ...).

    Each turn is ``<|im_start|>role\n{content}<|im_end|>\n``: three added tokens plus the
    ordinary BPE of ``role\n{content}``, since added tokens are never merged with their
    neighbours. Turn counts are remembered by (role, content), so a growing conversation
    re-encodes only its new turns. Exactly what :func:`render_prompt` and the backend give
    (``tests/test_fast_count.py`` checks it for every profile).
    """
    if (type(messages) is not list and type(messages) is not tuple) or not messages \
            or not setup.ordinary:
        return None
    profile = setup.profile
    reasoning = profile.reasoning != "none"
    strict = profile.strict
    trim = profile.trim_content
    backend = setup.backend
    cache = setup.turns
    ordinary = backend.count_ordinary
    total = 0
    last_user = -1
    since_user: list[int] = []  # counts of the turns after the last user turn
    # A conversation counted before, now with turns added: resume where that scan ended.
    # Comparing the earlier turns with copies of them (one C-level list comparison) is what
    # keeps a re-count close to the cost of encoding the new turn alone, and it is safe
    # when the caller edits a message in place. Short chats are not remembered: encoding a
    # few turns again costs less than keeping copies of them.
    chats = setup.chats
    start = 0
    remember = len(messages) >= _REMEMBER_FROM
    memo = (chats.get(id(messages)) or chats.get(-1)) if remember else None
    if memo is not None:
        seen = len(memo.messages)
        if seen <= len(messages) and (messages[:seen] if type(messages) is list
                                      else list(messages[:seen])) == memo.messages:
            start, total, last_user = seen, memo.total, memo.last_user
            since_user = list(memo.since_user)
    for i in range(start, len(messages)):
        m = messages[i]
        # Two keys that are role and content (checked below) are the common case: skip the
        # key-set comparison for them.
        if type(m) is not dict or (len(m) != 2 and not m.keys() <= _PLAIN_KEYS):
            return None
        role, content = m.get("role"), m.get("content")
        if type(content) is not str or type(role) is not str:
            return None  # the general path validates (a list role is unhashable here)
        key = (role, content)
        n = cache.get(key)
        if n is None:
            if role not in _PLAIN_ROLES:
                return None
            text = content.strip() if trim else content
            if "<" in text:  # may hold added tokens: the general path splits them off
                n = backend.count(f"{IM_START}{role}\n{text}{IM_END}\n")
            else:
                n = 3 + ordinary(f"{role}\n{text}")
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            cache[key] = n
        if role == "user" and not (reasoning and "<tool_response>" in content and
                                   is_tool_response(content.strip() if trim else content)):
            last_user = i
            since_user.clear()
        else:
            if role == "system" and ((i and strict) or "fileid://" in content):
                return None
            if reasoning and "</think>" in content:
                return None  # inline reasoning: the renderer splits it out
            since_user.append(n)
        total += n
    if reasoning and strict and last_user < 0:
        return None  # the template refuses a chat without a user turn
    if remember:
        if len(chats) >= _CHATS_LIMIT:
            chats.clear()
        scanned = (memo.messages if memo is not None and start else []) + [
            dict(m) for m in messages[start:]]
        chats[id(messages)] = chats[-1] = _ChatMemo(scanned, total, last_user,
                                                    tuple(since_user))
    if reasoning and 0 <= last_user < len(messages) - 1:
        # Assistant turns after the last query get their think block: render those alone.
        # (Without any user turn the renderer treats none as after it.)
        for i, n in zip(range(last_user + 1, len(messages)), since_user, strict=True):
            role, content = messages[i]["role"], messages[i]["content"]
            if role != "assistant":
                continue
            last = i == len(messages) - 1
            think_key = ("assistant\0last" if last else "assistant\0after", content)
            think = cache.get(think_key)
            if think is None:
                text = content.strip() if trim else content
                message = Message("assistant", (Part("text", text),), index=i)
                think = backend.count(render_assistant(message, text, True, last, profile))
                cache[think_key] = think
            total += think - n
    fixed = setup.fixed
    if messages[0]["role"] != "system" and profile.default_system is not None:
        n = fixed.get("system")
        if n is None:
            n = fixed["system"] = backend.count(
                f"{IM_START}system\n{profile.default_system}{IM_END}\n")
        total += n
    n = fixed.get(enable_thinking)
    if n is None:
        n = fixed[enable_thinking] = backend.count(profile.generation_prompt(enable_thinking))
    return total + n
