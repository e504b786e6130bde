"""The official `openai` client against a running `penwright serve`.

Usage: client_checks.py BASE_URL API_KEY MODEL_ID

Every check asserts; the script exits non-zero on the first failure and prints one JSON line
of what it saw at the end. `tests/tests/serve.rs` starts the server and runs this script.
"""

import json
import sys
import threading
import time
import urllib.request

import openai

base_url, key, model_id = sys.argv[1], sys.argv[2], sys.argv[3]
client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=120)
seen = {}


def stats():
    request = urllib.request.Request(
        base_url.rstrip("/").removesuffix("/v1") + "/penwright/stats",
        headers={"Authorization": f"Bearer {key}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def expect_status(status, call):
    try:
        call()
    except openai.APIStatusError as e:
        assert e.status_code == status, f"expected HTTP {status}, got {e.status_code}: {e}"
        body = e.body if isinstance(e.body, dict) else {}
        assert body.get("message"), f"the error has no message: {e.body!r}"
        return e
    raise AssertionError(f"expected HTTP {status}, the call succeeded")


# --- models ---------------------------------------------------------------------------
models = client.models.list().data
assert [m.id for m in models] == [model_id], models
seen["models"] = [m.id for m in models]

# --- completions: plain, deterministic, streamed ---------------------------------------
prompt = "The capital of France is Paris. The capital of Italy is"
plain = client.completions.create(model=model_id, prompt=prompt, max_tokens=12, temperature=0)
text = plain.choices[0].text
assert text.strip(), f"empty completion: {plain}"
assert plain.object == "text_completion"
assert plain.choices[0].finish_reason in ("stop", "length")
assert 0 < plain.usage.completion_tokens <= 12, plain.usage
assert plain.usage.prompt_tokens > 5
assert plain.usage.total_tokens == plain.usage.prompt_tokens + plain.usage.completion_tokens
again = client.completions.create(model=model_id, prompt=prompt, max_tokens=12, temperature=0)
assert again.choices[0].text == text, "greedy completions differ between two calls"
seen["completion"] = text

pieces, finish = [], None
for chunk in client.completions.create(
    model=model_id, prompt=prompt, max_tokens=12, temperature=0, stream=True
):
    assert chunk.object == "text_completion"
    pieces.append(chunk.choices[0].text)
    finish = chunk.choices[0].finish_reason or finish
assert "".join(pieces) == text, f"streamed {''.join(pieces)!r} != whole {text!r}"
assert len([p for p in pieces if p]) > 1, f"the stream came in one piece: {pieces}"
assert finish == plain.choices[0].finish_reason
seen["stream_pieces"] = len(pieces)

# sampling with a seed is reproducible; another seed may differ
sampled = [
    client.completions.create(
        model=model_id, prompt="Once upon a time", max_tokens=16, temperature=0.9, seed=7
    ).choices[0].text
    for _ in range(2)
]
assert sampled[0] == sampled[1], f"the same seed gave {sampled}"

# stop strings end the text before them
stopped = client.completions.create(
    model=model_id, prompt="One, two, three, four,", max_tokens=30, temperature=0, stop=[","]
)
assert "," not in stopped.choices[0].text, stopped.choices[0].text
assert stopped.choices[0].finish_reason == "stop", stopped.choices[0]
seen["stopped"] = stopped.choices[0].text

# with text after the cursor (fill in the middle where the model has the tokens)
infill = client.completions.create(
    model=model_id,
    prompt="def add(a, b):\n    ",
    suffix="\n\nprint(add(1, 2))\n",
    max_tokens=10,
    temperature=0,
)
assert infill.choices[0].text, infill
seen["infill"] = infill.choices[0].text

# --- chat, streamed with usage ---------------------------------------------------------
messages = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "Name three colours."},
]
whole = client.chat.completions.create(
    model=model_id, messages=messages, max_tokens=40, temperature=0
)
answer = whole.choices[0].message.content
assert whole.object == "chat.completion" and whole.choices[0].message.role == "assistant"
assert answer.strip(), whole
deltas, roles, usage = [], [], None
for chunk in client.chat.completions.create(
    model=model_id,
    messages=messages,
    max_tokens=40,
    temperature=0,
    stream=True,
    stream_options={"include_usage": True},
):
    assert chunk.object == "chat.completion.chunk"
    if chunk.usage is not None:
        usage = chunk.usage
        assert chunk.choices == []
        continue
    delta = chunk.choices[0].delta
    roles.append(delta.role)
    deltas.append(delta.content or "")
assert roles[0] == "assistant" and all(r is None for r in roles[1:]), roles
assert "".join(deltas) == answer, f"streamed chat {''.join(deltas)!r} != {answer!r}"
assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens, usage
seen["chat"] = answer

# --- refusals, each with OpenAI's error shape ------------------------------------------
bad = openai.OpenAI(base_url=base_url, api_key="wrong-key", max_retries=0)
expect_status(401, lambda: bad.models.list())
expect_status(
    401, lambda: bad.completions.create(model=model_id, prompt="hi", max_tokens=2)
)
e = expect_status(
    404, lambda: client.completions.create(model="no-such-model", prompt="hi", max_tokens=2)
)
assert e.body.get("code") == "model_not_found", e.body
expect_status(
    400, lambda: client.completions.create(model=model_id, prompt="hi", max_tokens=10**6)
)
expect_status(
    400,
    lambda: client.completions.create(model=model_id, prompt="hi", max_tokens=2, temperature=5),
)
e = expect_status(
    400,
    lambda: client.completions.create(
        model=model_id, prompt="word " * 20000, max_tokens=2
    ),
)
assert e.body.get("code") == "context_length_exceeded", e.body
expect_status(
    413, lambda: client.completions.create(model=model_id, prompt="x" * (2 << 20), max_tokens=2)
)

# --- a client that goes away cancels its generation ------------------------------------
before = stats()
stream = client.completions.create(
    model=model_id, prompt="Write a long story about the sea.", max_tokens=400,
    temperature=0.8, seed=1, stream=True,
)
got = 0
for chunk in stream:
    got += 1
    if got == 3:
        break
stream.close()
deadline = time.time() + 30
while stats()["cancelled"] == before["cancelled"] and time.time() < deadline:
    time.sleep(0.1)
after = stats()
assert after["cancelled"] == before["cancelled"] + 1, (before, after)
# the generation stopped early: far fewer than 400 tokens were added by it
assert after["generated_tokens"] - before["generated_tokens"] < 100, (before, after)
assert after["in_flight"] == 0, after
seen["cancelled"] = after["cancelled"]

# --- concurrent clients get their own answers -------------------------------------------
prompts = [f"Number {i} is followed by" for i in range(6)]
alone = {
    p: client.completions.create(model=model_id, prompt=p, max_tokens=6, temperature=0)
    .choices[0].text
    for p in prompts
}
together, errors = {}, []


def ask(p):
    try:
        together[p] = client.completions.create(
            model=model_id, prompt=p, max_tokens=6, temperature=0
        ).choices[0].text
    except Exception as e:  # noqa: BLE001 - reported below
        errors.append(repr(e))


threads = [threading.Thread(target=ask, args=(p,)) for p in prompts]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert not errors, errors
assert together == alone, (together, alone)
seen["concurrent"] = len(together)

print(json.dumps(seen))
