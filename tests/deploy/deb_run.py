#!/usr/bin/env python3
"""deb_run.py: the installed sasp-server started as its systemd unit starts it, and used.

  deb_run.py /lib/systemd/system/sasp-server.service

Reads the unit's ExecStart= and EnvironmentFile=, sources the options file with sh, appends
`--port 0` (a free port, so a daemon already on 8080 does not matter), and runs the command from /
as the unprivileged user nobody with no new privileges (what DynamicUser= gives, short of systemd)
and NOTIFY_SOCKET set. Checks: READY=1 arrives; /health answers; the daemon found the installed
model and www/ with no -m or --www (/props, /v1/models, GET /); a completion and an NDJSON stream
complete; SIGTERM brings STOPPING=1 and exit status 0. Exits non-zero on a failure."""
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def unit_value(unit, key):
    with open(unit) as f:
        for line in f:
            if line.startswith(key + "="):
                return line.strip()[len(key) + 1:]
    raise SystemExit("deb_run: %s has no %s=" % (unit, key))


def exec_start_argv(unit):
    env_file = unit_value(unit, "EnvironmentFile").lstrip("-")
    opts = subprocess.run(["sh", "-c", '. "$1" && printf %s "$SASP_OPTS"', "sh", env_file],
                          capture_output=True, text=True, check=True).stdout
    line = unit_value(unit, "ExecStart").replace("$SASP_OPTS", opts)
    return shlex.split(line) + ["--port", "0"]


def get(port, path, body=None):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path),
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read()


def check_daemon(port):
    assert get(port, "/health")[0] == 200
    props = json.loads(get(port, "/props")[2])
    assert props["model_path"] == "/usr/share/sasp/models/sasp-small", props["model_path"]
    models = json.loads(get(port, "/v1/models")[2])
    assert models["data"][0]["id"] == "sasp-small", models
    status, ctype, page = get(port, "/")
    assert status == 200 and ctype.startswith("text/html") and b"<html" in page.lower(), (status, ctype)
    _, _, body = get(port, "/v1/completions", {"prompt": "def fibonacci(n):", "max_tokens": 16, "seed": 1})
    answer = json.loads(body)
    assert answer["usage"]["completion_tokens"] > 0, answer
    _, _, body = get(port, "/api/generate", {"prompt": "import os", "options": {"num_predict": 12}})
    lines = [json.loads(x) for x in body.decode().splitlines() if x.strip()]
    assert lines[-1]["done"] is True and len(lines) > 2, lines[-1]
    print("deb_run: installed daemon: model %s, www/ served, completion %r, %d NDJSON lines"
          % (props["model_path"], answer["choices"][0]["text"][:40], len(lines)))


def main():
    argv = exec_start_argv(sys.argv[1])
    print("deb_run: ExecStart as nobody, from /:", " ".join(argv))
    address = "@sasp-deb-test-%d" % os.getpid()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + address[1:])
    sock.settimeout(120)
    out = tempfile.TemporaryFile(mode="w+")
    err = tempfile.TemporaryFile(mode="w+")
    cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--no-new-privs"] + argv
    proc = subprocess.Popen(cmd, cwd="/", env={"PATH": "/usr/bin:/bin", "NOTIFY_SOCKET": address},
                            stdout=out, stderr=err)
    try:
        t0 = time.time()
        assert sock.recv(4096).decode().startswith("READY=1")
        print("deb_run: READY=1 after %.2f s" % (time.time() - t0))
        out.seek(0)
        text = out.read()
        port = int(text.split("listening on http://")[1].split("/")[0].rsplit(":", 1)[1])
        check_daemon(port)
        proc.send_signal(signal.SIGTERM)
        assert sock.recv(4096).decode() == "STOPPING=1"
        rc = proc.wait(timeout=30)
        assert rc == 0, "exit status %d after SIGTERM" % rc
        print("deb_run: SIGTERM: STOPPING=1, exit status 0")
    except BaseException:
        err.seek(0)
        sys.stderr.write(err.read()[-3000:])
        raise
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
