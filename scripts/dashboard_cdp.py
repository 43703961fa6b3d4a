#!/usr/bin/env python3
"""Drives headless Chromium over the DevTools protocol (CDP) for scripts/check-dashboard.sh.

Python standard library only: a minimal WebSocket client (RFC 6455: handshake, masked client
frames, fragmented and long server frames) is enough for CDP. The driver opens the dashboard
once, runs the release command, then watches the page without reloading it: it reads the
traffic bars from the DOM every 200 ms, saves a screenshot whenever the split changes, and
passes when the candidate went through every staged weight to the declared one and the page
shows the rollout finished. Any failure exits 1 with what it saw.

usage: dashboard_cdp.py CDP_PORT DASHBOARD_URL SCREENSHOT_DIR ENDPOINT CANDIDATE WEIGHTS RELEASE_CMD
  WEIGHTS: the candidate's weights to see in order, e.g. 10,50,100
"""

import base64
import json
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.request

TIMEOUT_S = 180


def fail(message):
    print(f"check-dashboard: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


class WebSocket:
    def __init__(self, url):
        assert url.startswith("ws://"), url
        hostport, _, path = url[len("ws://"):].partition("/")
        host, _, port = hostport.partition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                fail("the DevTools WebSocket closed during the handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            fail(f"the DevTools WebSocket refused the upgrade: {head!r}")
        self.next_id = 0

    def _read(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                fail("the DevTools WebSocket closed")
            data += chunk
        return data

    def send(self, text):
        payload = text.encode()
        header = bytes([0x81])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def recv(self):
        message = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            payload = self._read(n)
            opcode = b0 & 0x0F
            if opcode == 0x8:
                fail("the DevTools WebSocket was closed by Chromium")
            if opcode in (0x9, 0xA):
                continue  # ping/pong
            message += payload
            if b0 & 0x80:
                return message.decode()

    def call(self, method, **params):
        self.next_id += 1
        ident = self.next_id
        self.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            answer = json.loads(self.recv())
            if answer.get("id") == ident:
                if "error" in answer:
                    fail(f"{method}: {answer['error']}")
                return answer.get("result", {})


def page_target(port):
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5))
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
        except OSError:
            pass
        time.sleep(0.2)
    fail(f"Chromium's DevTools did not answer on port {port}")


READ_JS = """(() => {
  const ep = document.querySelector('[data-endpoint=%(endpoint)s]');
  const bars = {};
  if (ep) { ep.querySelectorAll('[data-deployment]').forEach(li => { bars[li.dataset.deployment] = Number(li.dataset.weight); }); }
  const rollout = document.querySelector('[data-rollout=%(endpoint)s]');
  const sync = document.querySelector('.facts dd:nth-of-type(3)');
  return JSON.stringify({
    marker: window.__flightdeckMarker || null,
    bars: bars,
    rollout: rollout ? {state: rollout.dataset.state, stage: rollout.dataset.stage} : null,
    sync: sync ? sync.textContent.trim() : null,
    live: (document.getElementById('live') || {}).textContent || null,
    gates: document.querySelectorAll('figure.gate svg').length,
  });
})()"""


def main():
    if len(sys.argv) != 8:
        fail(__doc__)
    port, url, shots, endpoint, candidate, weights, release = sys.argv[1:]
    want = [int(w) for w in weights.split(",")]
    os.makedirs(shots, exist_ok=True)
    ws = WebSocket(page_target(port))
    ws.call("Page.enable")
    ws.call("Emulation.setDeviceMetricsOverride", width=1100, height=900, deviceScaleFactor=1, mobile=False)
    ws.call("Page.navigate", url=url)

    def read():
        js = READ_JS % {"endpoint": json.dumps(endpoint)}
        value = ws.call("Runtime.evaluate", expression=js, returnByValue=True)["result"].get("value")
        return json.loads(value) if value else {}

    def shot(name):
        data = ws.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path = os.path.join(shots, name)
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        print(f"check-dashboard: screenshot {path}")

    deadline = time.time() + 30
    while True:
        state = read()
        if state.get("bars") and state.get("live") == "live":
            break
        if time.time() > deadline:
            fail(f"the dashboard did not show {endpoint} live within 30 s: {state}")
        time.sleep(0.2)
    # Set once; a reload would lose it.
    ws.call("Runtime.evaluate", expression="window.__flightdeckMarker = 'opened-once'")
    shot("0-before-release.png")
    print(f"check-dashboard: page open, {endpoint}: {state['bars']}; releasing")
    subprocess.run(release, shell=True, check=True)

    seen = []
    stages = set()
    last_bars = None
    deadline = time.time() + TIMEOUT_S
    final = None
    while time.time() < deadline:
        state = read()
        if state.get("marker") != "opened-once":
            fail(f"the page was reloaded (marker gone): {state}")
        bars = state.get("bars") or {}
        weight = bars.get(candidate)
        if weight is not None and (not seen or seen[-1] != weight):
            seen.append(weight)
        if state.get("rollout") and state["rollout"].get("stage"):
            stages.add(state["rollout"]["stage"])
        if bars != last_bars:
            last_bars = bars
            shot(f"{len(seen)}-{candidate}-{weight}.png")
            print(f"check-dashboard: traffic {bars}, rollout {state.get('rollout')}, gates charted {state.get('gates')}")
        if weight == want[-1] and state.get("rollout") is None and state.get("sync", "").startswith(("applied", "in_sync")):
            final = state
            break
        time.sleep(0.2)
    if final is None:
        fail(f"the rollout did not finish on the page within {TIMEOUT_S} s; {candidate} weights seen {seen}")
    steps = [w for w in seen if w in want]
    if steps != want:
        fail(f"the page did not show {candidate} move through {want} in order without a reload; it showed {seen}")
    time.sleep(0.5)
    shot("final.png")
    print(f"check-dashboard: ok: {candidate} went {seen} on one page load (stages seen {sorted(stages)}), final {final['bars']}, sync {final['sync']!r}")


if __name__ == "__main__":
    main()
