#!/usr/bin/env python3
"""notify_test.py: systemd's side of Type=notify, played against sasp-server.

  notify_test.py SASP_SERVER MODEL_DIR

Binds an AF_UNIX datagram socket (a path, then an abstract @name), starts the daemon with
NOTIFY_SOCKET naming it, and checks: the first datagram is READY=1 and arrives only when the model is
loaded, the daemon has printed where it listens and /health already answers 200; SIGTERM brings
STOPPING=1 and exit status 0. Exits non-zero on a failure."""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def health(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/health" % port, timeout=5) as r:
        return r.status


def run(server, model, address, label):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + address[1:] if address.startswith("@") else address)
    sock.settimeout(60)
    env = dict(os.environ, NOTIFY_SOCKET=address)
    out = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen([server, "-m", model, "--port", "0", "-t", "1"], env=env, stdout=out,
                            stderr=subprocess.DEVNULL)
    try:
        t0 = time.time()
        msg = sock.recv(4096).decode()
        ready_s = time.time() - t0
        assert msg.split("\n")[0] == "READY=1", "first datagram %r" % msg
        out.seek(0)
        text = out.read()
        assert "listening on http://" in text, "READY=1 came before the daemon said it listens: %r" % text
        port = int(text.split("listening on http://")[1].split("/")[0].rsplit(":", 1)[1])
        assert health(port) == 200, "/health not 200 at READY=1"
        proc.send_signal(signal.SIGTERM)
        msg = sock.recv(4096).decode()
        assert msg == "STOPPING=1", "after SIGTERM: %r" % msg
        rc = proc.wait(timeout=30)
        assert rc == 0, "exit status %d after SIGTERM" % rc
        print("notify_test: %s: READY=1 after %.2f s with /health 200, STOPPING=1 on SIGTERM, exit 0"
              % (label, ready_s))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()


def main():
    server, model = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as d:
        run(server, model, os.path.join(d, "notify"), "socket path")
    run(server, model, "@sasp-notify-test-%d" % os.getpid(), "abstract socket")
    # no NOTIFY_SOCKET: the daemon runs as before (no datagram, no error)
    proc = subprocess.run([server, "--version"], capture_output=True, text=True, timeout=10)
    assert proc.returncode == 0 and proc.stdout.startswith("sasp-server "), proc.stdout


if __name__ == "__main__":
    main()
