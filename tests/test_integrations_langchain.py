"""LangChain: a real ChatOpenAI (through the metered httpx transport) and a real ChatTongyi
(through the metered dashscope SDK) against the local DashScope stand-in."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from integration_support import KEY

import qwen_meter as qm

langchain_openai = pytest.importorskip("langchain_openai")
from qwen_meter.integrations.langchain import QwenMeterCallbackHandler, chat_tongyi  # noqa: E402


def chat_openai(meter, server, **options):
    return langchain_openai.ChatOpenAI(model="qwen-plus", api_key=KEY,
                                       base_url=server.compatible,
                                       http_client=meter.httpx_client(),
                                       http_async_client=meter.httpx_async_client(),
                                       callbacks=[QwenMeterCallbackHandler()], **options)


def config(n, **extra):
    return {"tags": [f"feature=f{n}"], "metadata": {"session": f"s{n}", "n": n},
            "run_id": uuid.UUID(int=n), "run_name": f"ask-{n}", **extra}


def check(record, n):
    assert f"feature=f{n}" in record.tags
    assert record.metadata["session"] == f"s{n}" and record.metadata["n"] == str(n)
    assert record.metadata["langchain_run_id"] == str(uuid.UUID(int=n))
    assert record.metadata["langchain_run_name"] == f"ask-{n}"
    assert record.metadata["ls_provider"] == "openai" or "ls_provider" not in record.metadata


def test_chat_openai_sync_invoke_and_stream(make_meter, server):
    meter = make_meter()
    chat = chat_openai(meter, server)
    with qm.attribute(tags=["team=a"]):
        chat.invoke("你是誰?", config=config(1))
    "".join(c.content for c in chat.stream("你是誰?", config=config(2)))
    chat.invoke("你是誰?")  # outside any run config: no leftovers of the last runs
    first, second, third = list(meter.log)
    check(first, 1)
    assert "team=a" in first.tags  # LangChain's block nests inside the caller's
    check(second, 2)
    assert second.stream and second.completion_tokens == 16
    assert "session" not in third.metadata and not any(t.startswith("feature=")
                                                       for t in third.tags)
    assert third.metadata["langchain_run_id"] not in (first.metadata["langchain_run_id"],
                                                      second.metadata["langchain_run_id"])
    assert qm.current_attribution() == qm.Attribution()


def test_chat_openai_batch_keeps_each_input_apart(make_meter, server):
    meter = make_meter()
    chat = chat_openai(meter, server)
    chat.batch(["你是誰?"] * 4, config=[config(n) for n in range(10, 14)])
    by_run = {r.metadata["langchain_run_id"]: r for r in meter.log}
    for n in range(10, 14):
        check(by_run[str(uuid.UUID(int=n))], n)


def test_chat_openai_async(make_meter, server):
    meter = make_meter()
    chat = chat_openai(meter, server)

    async def go():
        await asyncio.gather(*(chat.ainvoke("你是誰?", config=config(n)) for n in (20, 21, 22)))
        async for _ in chat.astream("你是誰?", config=config(23)):
            pass
        await chat.abatch(["你是誰?"] * 2, config=[config(24), config(25)])

    asyncio.run(go())
    by_run = {r.metadata["langchain_run_id"]: r for r in meter.log}
    assert len(by_run) == 6
    for n in range(20, 26):
        check(by_run[str(uuid.UUID(int=n))], n)


def test_failed_run_closes_its_block(make_meter, server):
    meter = make_meter()
    chat = chat_openai(meter, server, max_retries=0)
    server.push({"status": 400, "code": "InvalidParameter", "message": "bad"})
    with pytest.raises(Exception, match="bad"):
        chat.invoke("你是誰?", config=config(30))
    (record,) = list(meter.log)
    assert record.status == "error"
    check(record, 30)
    assert qm.current_attribution() == qm.Attribution()


# --- ChatTongyi -------------------------------------------------------------------------------

@pytest.fixture
def tongyi(server, make_meter):
    pytest.importorskip("langchain_community")
    dashscope = pytest.importorskip("dashscope")
    previous = dashscope.base_http_api_url
    dashscope.base_http_api_url = server.native
    meter = make_meter()
    yield meter
    dashscope.base_http_api_url = previous


@pytest.mark.parametrize("streaming", [False, True])
def test_chat_tongyi_records_the_billed_usage(tongyi, server, streaming):
    chat = chat_tongyi(tongyi, model="qwen-plus", api_key=KEY, streaming=streaming,
                       callbacks=[QwenMeterCallbackHandler()])
    answer = chat.invoke("你是誰?", config={**config(40), "metadata": {"session": "s40",
                                                                       "n": 40}})
    (record,) = list(tongyi.log)
    body = server.requests[-1]["body"]
    prompt = qm.count_messages(body["input"]["messages"], "qwen-plus").tokens
    assert (record.status, record.prompt_tokens, record.completion_tokens) == ("ok", prompt, 16)
    assert record.usage_estimated is False and record.stream is streaming
    usage = answer.response_metadata["token_usage"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (prompt, 16)
    assert record.cost is not None and record.currency == "CNY"
    assert record.metadata["langchain_run_id"] == str(uuid.UUID(int=40))


def test_chat_tongyi_async_keeps_the_attribution(tongyi, server):
    chat = chat_tongyi(tongyi, model="qwen-plus", api_key=KEY,
                       callbacks=[QwenMeterCallbackHandler()])
    streaming = chat_tongyi(tongyi, model="qwen-plus", api_key=KEY, streaming=True,
                            callbacks=[QwenMeterCallbackHandler()])

    async def go():
        await chat.ainvoke("你是誰?", config=config(50))
        async for _ in streaming.astream("你是誰?", config=config(51)):
            pass

    asyncio.run(go())
    by_run = {r.metadata.get("langchain_run_id"): r for r in tongyi.log}
    for n in (50, 51):
        record = by_run[str(uuid.UUID(int=n))]
        assert record.status == "ok" and record.completion_tokens == 16
        assert f"feature=f{n}" in record.tags


def test_chat_tongyi_meters_vision_models_through_multimodal_conversation(tongyi):
    from qwen_meter.clients.dashscope import MeteredMultiModalConversation

    chat = chat_tongyi(tongyi, model="qwen-vl-plus", api_key=KEY)
    assert isinstance(chat.client, MeteredMultiModalConversation)


def test_a_stream_left_early_closes_its_block(make_meter, server):
    meter = make_meter()
    chat = chat_openai(meter, server)
    for _ in chat.stream("你是誰?", config=config(60)):
        break
    assert qm.current_attribution() == qm.Attribution()
    chat.invoke("你是誰?")
    later = list(meter.log)[-1]
    assert later.metadata["langchain_run_id"] != str(uuid.UUID(int=60))
    assert "session" not in later.metadata


# --- a finished run never tags later calls (issue 26) ----------------------------------------

def untagged(record):
    return (not any(t.startswith("feature=") for t in record.tags)
            and not any(k.startswith("langchain_") for k in record.metadata)
            and "session" not in record.metadata)


def plain_call(meter, server):
    import openai

    client = meter.wrap(openai.OpenAI(api_key=KEY, base_url=server.compatible))
    client.chat.completions.create(model="qwen-plus",
                                   messages=[{"role": "user", "content": "你是誰?"}])


def test_sync_runs_leave_nothing_behind_for_a_plain_openai_call(make_meter, server):
    meter = make_meter()
    chat = chat_openai(meter, server)
    chat.invoke("你是誰?", config=config(70))
    plain_call(meter, server)
    "".join(c.content for c in chat.stream("你是誰?", config=config(71)))
    plain_call(meter, server)
    chat.batch(["你是誰?"] * 2, config=[config(72), config(73)])
    plain_call(meter, server)
    records = list(meter.log)
    assert len(records) == 7
    for index in (1, 3, 6):
        assert untagged(records[index]), records[index]
    check(records[0], 70)
    check(records[2], 71)


@pytest.mark.parametrize("how", ["ainvoke", "astream", "abatch"])
def test_async_run_leaves_nothing_behind_in_the_task(make_meter, server, how):
    import openai

    meter = make_meter()
    chat = chat_openai(meter, server)
    plain = meter.wrap(openai.AsyncOpenAI(api_key=KEY, base_url=server.compatible))
    seen = []

    async def go():
        if how == "ainvoke":
            await chat.ainvoke("你是誰?", config=config(80))
        elif how == "astream":
            async for _ in chat.astream("你是誰?", config=config(80)):
                pass
        else:
            await chat.abatch(["你是誰?"] * 2, config=[config(80), config(81)])
        seen.append(qm.current_attribution())
        await plain.chat.completions.create(
            model="qwen-plus", messages=[{"role": "user", "content": "你是誰?"}])

    asyncio.run(go())
    records = list(meter.log)
    assert len(records) == (3 if how == "abatch" else 2)
    assert seen == [qm.Attribution()]
    check(next(r for r in records
               if r.metadata.get("langchain_run_id") == str(uuid.UUID(int=80))), 80)
    later = records[-1]
    assert later.status == "ok" and untagged(later), later
