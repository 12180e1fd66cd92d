#!/usr/bin/env python3
"""A faultline client program for faultline-node: one JSON line in, one out."""
import json, os, socket, sys, urllib.error, urllib.request

READS = os.environ.get("FAULTLINE_READ_MODE", "linearizable")
def call(op, method, path, body):
    req = urllib.request.Request(
        f"http://{op['addr']}/kv/{op['key']}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-Client-Id": f"p{op['client']}",
                 "X-Request-Seq": str(op["seq"])})
    try:
        with urllib.request.urlopen(req, timeout=op["timeout_ms"] / 1000) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)
def reply(op):
    f, v = op["f"], op.get("value")
    method, path, body = {
        "read": ("GET", f"?consistency={READS}", None),
        "write": ("PUT", "", {"value": v}),
        "cas": ("POST", "/cas", {"from": op.get("from"), "to": op.get("to")}),
        "append": ("POST", "/append", {"value": v}),
        "incr": ("POST", "/incr", {"delta": op.get("delta")})}[f]
    try:
        status, ans = call(op, method, path, body)
    except urllib.error.URLError as e:  # refused: nothing was sent
        if isinstance(e.reason, ConnectionRefusedError):
            return {"type": "fail", "code": 11, "text": "refused"}
        return {"type": "info", "text": str(e.reason)}
    except (socket.timeout, TimeoutError, ConnectionError) as e:
        return {"type": "info", "text": repr(e)}
    if status == 200: return {"type": "ok", "value": ans.get("value")}
    if status == 412: return {"type": "fail", "code": 22, "value": ans.get("value")}
    if status == 503: return {"type": "fail", "code": 11, "leader": ans.get("leader")}
    if status in (400, 404, 413): return {"type": "fail", "code": 12, "text": ans.get("error")}
    return {"type": "info", "text": f"status {status}"}
for line in sys.stdin:
    print(json.dumps(reply(json.loads(line))), flush=True)
