"""The official OpenAI and Anthropic SDKs, unmodified, pointed at Budget's gateway.

Usage: gateway_sdks.py BUDGET_URL API_KEY (calls|refused). Prints one JSON object with what each call
returned, for budget-api/tests/api/gateway.rs to check against the usage records.
"""
import json
import sys

import anthropic
import openai

base, key, mode = sys.argv[1], sys.argv[2], sys.argv[3]
# The three lines a user writes (README, "Use Budget as your gateway"):
client = openai.OpenAI(base_url=f"{base}/v1", api_key=key)
claude = anthropic.Anthropic(base_url=base, api_key=key)
out = {}

if mode == "calls":
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", max_tokens=50, messages=[{"role": "user", "content": "Say hello to the gateway please"}])
    chat = raw.parse()
    out["chat"] = {"content": chat.choices[0].message.content, "usage": chat.usage.model_dump(),
                   "cost": raw.headers.get("x-budget-cost"), "remaining": raw.headers.get("x-budget-remaining")}

    # No include_usage asked: every chunk has a choice (the usage chunk is read by Budget, not sent).
    text = ""
    for chunk in client.chat.completions.create(
            model="gpt-4o", max_tokens=40, stream=True, messages=[{"role": "user", "content": "Stream to me"}]):
        text += chunk.choices[0].delta.content or ""
    out["stream"] = {"text": text}

    usage = None
    for chunk in client.chat.completions.create(
            model="gpt-4o", max_tokens=30, stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "Stream with usage"}]):
        if chunk.usage:
            usage = chunk.usage.model_dump()
    out["stream_usage"] = usage

    emb = client.embeddings.create(model="text-embedding-3-small", input=["one two three", "four five"])
    out["embeddings"] = {"n": len(emb.data), "usage": emb.usage.model_dump()}

    raw = claude.messages.with_raw_response.create(
        model="claude-sonnet-4", max_tokens=60, messages=[{"role": "user", "content": "Hello there Claude, how are you"}])
    msg = raw.parse()
    out["messages"] = {"text": msg.content[0].text, "usage": msg.usage.model_dump(),
                       "cost": raw.headers.get("x-budget-cost")}

    with claude.messages.stream(model="claude-sonnet-4", max_tokens=30,
                                messages=[{"role": "user", "content": "Stream please"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    out["messages_stream"] = {"text": text, "usage": final.usage.model_dump()}

    out["models"] = sorted(m.id for m in client.models.list())
elif mode == "refused":
    for name, call in [
        ("openai", lambda: client.chat.completions.create(
            model="gpt-4o", max_tokens=1000, messages=[{"role": "user", "content": "too much"}])),
        ("anthropic", lambda: claude.messages.create(
            model="claude-sonnet-4", max_tokens=1000, messages=[{"role": "user", "content": "too much"}])),
    ]:
        try:
            call()
            out[name] = {"refused": False}
        except (openai.APIStatusError, anthropic.APIStatusError) as e:
            out[name] = {"refused": True, "status": e.status_code, "body": e.body,
                         "retry_after": e.response.headers.get("retry-after"),
                         "type": type(e).__name__}
print(json.dumps(out))
