#!/usr/bin/env python3
"""test_dialects.py: Anthropic's Messages API and OpenAI's Responses API of sasp-server, over HTTP, as
their clients call them (Python standard library only): /v1/messages (streamed and not, the same text
and counts both ways, stop sequences, prefill, JSON output, the event sequence), /v1/messages/count_tokens,
Anthropic's errors and keys (x-api-key), /v1/responses (streamed and not, text.format, the stateless
refusals); the prompt both make is the one /v1/chat/completions makes of the same conversation.

Uses the Server class and helpers of test_server.py (the tiny test model on a free port). Run by
tests/server/run.sh under `make check`; by hand:
SASP_BUILDDIR=. SASP_SRCDIR=. python3 tests/server/test_dialects.py [name-substring ...]
"""
import json
import sys

import test_server as ts
from test_server import check_error, validate

SAMPLED = dict(temperature=1.0, top_k=0, top_p=1.0)  # Anthropic's temperature is at most 1
HI = [{"role": "user", "content": "Say hi"}]


def stream_named(s, path, body, headers=None):
    """POST with stream: true; the named events as (name, data object), checking the framing."""
    c = s.conn()
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    c.request("POST", path, body=json.dumps(dict(body, stream=True)).encode(), headers=h)
    r = c.getresponse()
    assert r.status == 200, (r.status, r.read())
    assert r.getheader("Content-Type") == "text/event-stream"
    events, name = [], None
    while True:
        line = r.readline()
        if not line:
            break
        line = line.rstrip(b"\r\n")
        if line.startswith(b"event: "):
            assert name is None, "two event lines"
            name = line[7:].decode()
        elif line.startswith(b"data: "):
            assert name, "data without an event name"
            data = json.loads(line[6:].decode("utf-8", errors="strict"))
            assert data["type"] == name, (name, data)
            events.append((name, data))
            name = None
        else:
            assert line == b"", line
    c.close()
    return events


def check_anthropic_error(status, body, want_status, want_type, contains=None):
    assert status == want_status, (status, want_status, body)
    assert set(body) == {"type", "error"} and body["type"] == "error", body
    assert set(body["error"]) == {"type", "message"} and body["error"]["type"] == want_type, body
    for c in contains or []:
        assert c in body["error"]["message"], (c, body)


def n_tokens(s, text):
    return len(s.post("/tokenize", {"content": text})[1]["tokens"])


def message_text(events):
    return "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")


# --- Anthropic's messages ---


def t_messages(s):
    req = dict(SAMPLED, model="tiny-model", max_tokens=20, system="Be brief.", messages=HI)
    for seed in (1, 2):
        st, m = s.post("/v1/messages", dict(req, seed=seed), {"anthropic-version": "2023-06-01"})
        assert st == 200, m
        assert m["type"] == "message" and m["role"] == "assistant" and m["id"].startswith("msg_"), m
        assert m["model"] == "tiny-model"
        assert [b["type"] for b in m["content"]] == ["text"]
        assert m["stop_reason"] in ("end_turn", "max_tokens"), m
        assert m["stop_sequence"] is None
        # the prompt is the chat template's: the same tokens as /v1/chat/completions of the same turns
        st, chat = s.post("/v1/chat/completions", {"messages": [{"role": "system", "content": "Be brief."}] + HI,
                                                   "max_tokens": 1})
        assert m["usage"]["input_tokens"] == chat["usage"]["prompt_tokens"], (m["usage"], chat["usage"])
        assert m["usage"]["input_tokens"] == n_tokens(s, "System: Be brief.\nUser: Say hi\nAssistant:")
        if m["stop_reason"] == "max_tokens":
            assert m["usage"]["output_tokens"] == 20
        # streamed: Anthropic's event sequence, the same text, reason and counts
        ev = stream_named(s, "/v1/messages", dict(req, seed=seed))
        names = [n for n, d in ev]
        assert names[:3] == ["message_start", "content_block_start", "ping"], names
        assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"], names
        assert set(names[3:-3]) <= {"content_block_delta"}, names
        start = ev[0][1]["message"]
        assert start["id"].startswith("msg_") and start["content"] == [] and start["stop_reason"] is None
        assert start["usage"]["input_tokens"] == m["usage"]["input_tokens"]
        assert message_text(ev) == m["content"][0]["text"]
        delta = ev[-2][1]
        assert delta["delta"]["stop_reason"] == m["stop_reason"], (delta, m)
        assert delta["usage"]["output_tokens"] == m["usage"]["output_tokens"]
    # the same over the OpenAI-style template stops: the model never writes the next turn
    assert "\nUser:" not in m["content"][0]["text"]


def t_messages_stops_and_prefill(s):
    # prefill: the answer continues a last assistant message, which is part of the prompt
    pre = HI + [{"role": "assistant", "content": "The cat"}]
    base = dict(model="tiny-model", temperature=0, max_tokens=30, messages=pre)
    st, m = s.post("/v1/messages", base)
    assert st == 200, m
    assert m["usage"]["input_tokens"] == n_tokens(s, "User: Say hi\nAssistant: The cat"), m
    text = m["content"][0]["text"]
    # a stop sequence whose first match is past the first character: the text before it is the answer
    k = next(k for k in range(1, len(text) - 1) if text.find(text[k:k + 2]) == k)
    stop, want = text[k:k + 2], text[:k]
    st, m2 = s.post("/v1/messages", dict(base, stop_sequences=[stop, "NEVER-MATCHES"]))
    assert m2["content"][0]["text"] == want and m2["stop_reason"] == "stop_sequence", (m2, stop)
    assert m2["stop_sequence"] == stop
    ev = stream_named(s, "/v1/messages", dict(base, stop_sequences=[stop]))
    assert message_text(ev) == want and ev[-2][1]["delta"]["stop_sequence"] == stop, ev
    # max_tokens 0: the prompt is read, nothing is generated
    st, z = s.post("/v1/messages", dict(base, max_tokens=0))
    assert z["content"][0]["text"] == "" and z["stop_reason"] == "max_tokens" and z["usage"]["output_tokens"] == 0, z


def t_messages_json_and_count(s):
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 8},
                                               "n": {"type": "integer", "minimum": 0}}, "required": ["name", "n"]}
    for seed in range(3):
        st, m = s.post("/v1/messages", dict(SAMPLED, model="tiny-model", max_tokens=80, seed=seed, messages=HI,
                                            output_config={"format": {"type": "json_schema", "schema": schema}}))
        assert st == 200 and validate(json.loads(m["content"][0]["text"]), schema), m
        assert m["stop_reason"] == "end_turn", m
    req = {"model": "tiny-model", "system": [{"type": "text", "text": "S"}], "messages": HI}
    st, c = s.post("/v1/messages/count_tokens", req)
    assert st == 200 and set(c) == {"input_tokens"}, c
    st, m = s.post("/v1/messages", dict(req, max_tokens=1))
    assert c["input_tokens"] == m["usage"]["input_tokens"], (c, m["usage"])
    check_anthropic_error(*s.post("/v1/messages/count_tokens", dict(req, model="claude-x")), 404, "not_found_error")


def t_messages_errors(s):
    ok = dict(model="tiny-model", max_tokens=4, messages=HI)
    check_anthropic_error(*s.post("/v1/messages", dict(ok, model="claude-sonnet-4-5")), 404, "not_found_error",
                          ["claude-sonnet-4-5"])
    check_anthropic_error(*s.post("/v1/messages", {"model": "tiny-model", "messages": HI}), 400,
                          "invalid_request_error", ["max_tokens"])
    check_anthropic_error(*s.post("/v1/messages", dict(ok, tools=[{"name": "f", "input_schema": {"type": "object"}}])),
                          400, "invalid_request_error", ["tools"])
    check_anthropic_error(*s.post("/v1/messages", dict(ok, thinking={"type": "enabled", "budget_tokens": 2000})), 400,
                          "invalid_request_error", ["thinking"])
    img = [{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                      "data": "iVBORw0KGgo="}}]}]
    check_anthropic_error(*s.post("/v1/messages", dict(ok, messages=img)), 400, "invalid_request_error", ["image"])
    st, h, data = s.request("POST", "/v1/messages", "{not json")
    check_anthropic_error(st, json.loads(data), 400, "invalid_request_error")
    st, h, data = s.request("GET", "/v1/messages")
    check_anthropic_error(st, json.loads(data), 405, "invalid_request_error")
    st, h, data = s.request("POST", "/v1/messages/batches", ok)
    check_anthropic_error(st, json.loads(data), 404, "not_found_error")
    # the other paths keep OpenAI's shape
    check_error(*s.post("/v1/chat/completions", {"messages": []}), 400, "messages")
    m = s.metrics()
    assert m['sasp_requests_total{endpoint="/v1/messages",status="200"}'] >= 1, m
    assert m['sasp_requests_total{endpoint="/v1/messages/count_tokens",status="200"}'] >= 1, m


def t_keys(s):
    """A server with --api-key: x-api-key (Anthropic's clients) or Authorization: Bearer, on every path."""
    body = {"model": "tiny-model", "max_tokens": 2, "messages": HI}
    st, r = s.post("/v1/messages", body)
    check_anthropic_error(st, r, 401, "authentication_error", ["x-api-key"])
    check_anthropic_error(*s.post("/v1/messages", body, {"x-api-key": "wrong"}), 401, "authentication_error")
    assert s.post("/v1/messages", body, {"x-api-key": "k2", "anthropic-version": "2023-06-01"})[0] == 200
    assert s.post("/v1/messages", body, {"Authorization": "Bearer k1"})[0] == 200
    assert s.post("/v1/messages/count_tokens", body, {"x-api-key": "k1"})[0] == 200
    assert s.post("/v1/completions", {"prompt": "x", "max_tokens": 2}, {"x-api-key": "k1"})[0] == 200
    check_error(*s.post("/v1/responses", {"input": "x"}), 401)
    assert s.post("/v1/responses", {"input": "x", "max_output_tokens": 2}, {"Authorization": "Bearer k2"})[0] == 200


# --- OpenAI's responses ---


def response_text(r):
    return "".join(p["text"] for item in r["output"] if item["type"] == "message" for p in item["content"]
                   if p["type"] == "output_text")


def t_responses(s):
    req = dict(SAMPLED, instructions="Be brief.", input="Say hi", max_output_tokens=20, metadata={"k": "v"})
    for seed in (1, 2):
        st, r = s.post("/v1/responses", dict(req, seed=seed))
        assert st == 200, r
        assert r["object"] == "response" and r["id"].startswith("resp_") and r["model"] == "tiny-model", r
        assert r["status"] in ("completed", "incomplete") and r["error"] is None
        if r["status"] == "incomplete":
            assert r["incomplete_details"] == {"reason": "max_output_tokens"} and r["usage"]["output_tokens"] == 20
        assert r["instructions"] == "Be brief." and r["metadata"] == {"k": "v"} and r["max_output_tokens"] == 20
        assert r["store"] is False and r["text"] == {"format": {"type": "text"}}
        [item] = r["output"]
        assert item["type"] == "message" and item["role"] == "assistant" and item["id"].startswith("msg_")
        assert item["status"] == r["status"]
        u = r["usage"]
        assert u["total_tokens"] == u["input_tokens"] + u["output_tokens"]
        st, chat = s.post("/v1/chat/completions", {"messages": [{"role": "system", "content": "Be brief."},
                                                                {"role": "user", "content": "Say hi"}], "max_tokens": 1})
        assert u["input_tokens"] == chat["usage"]["prompt_tokens"], (u, chat["usage"])
        ev = stream_named(s, "/v1/responses", dict(req, seed=seed))
        names = [n for n, d in ev]
        assert names[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                             "response.content_part.added"], names
        final = "response.completed" if r["status"] == "completed" else "response.incomplete"
        assert names[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                              final], names
        assert [d["sequence_number"] for n, d in ev] == list(range(len(ev)))
        text = "".join(d["delta"] for n, d in ev if n == "response.output_text.delta")
        assert text == response_text(r) == ev[-4][1]["text"], (text, r)
        done = ev[-1][1]["response"]
        assert done["status"] == r["status"] and done["usage"]["output_tokens"] == u["output_tokens"]
        assert response_text(done) == text and done["output"][0]["id"] == ev[2][1]["item"]["id"]
    # message items, a developer message, an assistant's output_text, the /responses alias
    items = [{"role": "developer", "content": "D"}, {"type": "message", "role": "user",
                                                     "content": [{"type": "input_text", "text": "a"}]},
             {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "b",
                                                                   "annotations": []}]},
             {"role": "user", "content": "c"}]
    st, r = s.post("/responses", {"input": items, "max_output_tokens": 2})
    assert st == 200 and r["usage"]["input_tokens"] == n_tokens(s, "System: D\nUser: a\nAssistant: b\nUser: c\nAssistant:")


def t_responses_json_and_refusals(s):
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 8},
                                               "ok": {"type": "boolean"}}, "required": ["name", "ok"]}
    for seed in range(3):
        st, r = s.post("/v1/responses", dict(SAMPLED, seed=seed, input="JSON please", max_output_tokens=80, text={
            "format": {"type": "json_schema", "name": "p", "strict": True, "schema": schema}}))
        assert st == 200 and r["status"] == "completed" and validate(json.loads(response_text(r)), schema), r
        assert r["text"]["format"]["name"] == "p"
        st, r = s.post("/v1/responses", dict(SAMPLED, seed=seed, input="JSON please", max_output_tokens=80,
                                             text={"format": {"type": "json_object"}}))
        assert isinstance(json.loads(response_text(r)), dict), r
    for field, value in (("previous_response_id", "resp_1"), ("store", True), ("background", True),
                         ("conversation", "conv_1"), ("tools", [{"type": "function", "name": "f"}]),
                         ("reasoning", {"effort": "high"})):
        check_error(*s.post("/v1/responses", {"input": "x", field: value}), 400, field)
    check_error(*s.post("/v1/responses", {"input": [{"role": "user", "content": [
        {"type": "input_image", "image_url": "data:image/png;base64,AA=="}]}]}), 400, "input[0].content")
    check_error(*s.post("/v1/responses", {"input": "x", "max_output_tokens": 10 ** 6}), 400, "max_output_tokens")
    assert s.post("/v1/responses", {"input": "x", "store": False, "max_output_tokens": 2})[0] == 200


def main():
    only = sys.argv[1:]
    plan = [
        (("--parallel", "4"), "dialects", [t_messages, t_messages_stops_and_prefill, t_messages_json_and_count,
                                            t_messages_errors, t_responses, t_responses_json_and_refusals]),
        (("--api-key", "k1", "--api-key", "k2"), "dialects-key", [t_keys]),
    ]
    failures = ts.run_plan(plan, only)
    return ts.report(failures)


if __name__ == "__main__":
    sys.exit(main())
