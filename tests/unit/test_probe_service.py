"""service.jupyter / service.ssh: when they apply, and how sshd settings and kernel frames are judged."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import struct
import threading

from envkit.probe import checks_service as service
from envkit.probe import registry
from envkit.probe.context import Context
from envkit.probe.outcome import FAIL, NA, SKIP

LAYERED = {"io.envkit.user-layer": "jupyter,ssh"}


def test_service_checks_are_registered_in_the_suite() -> None:
    ids = registry.public_ids()
    assert "service.jupyter" in ids and "service.ssh" in ids


def test_images_without_the_layer_get_not_applicable() -> None:
    for check in (service.check_jupyter, service.check_ssh):
        outcome = check(Context(labels={"io.envkit.user-layer": ""}))
        assert outcome.status == NA and "no" in outcome.summary and "user layer" in outcome.summary
        assert outcome.details["not_applicable"] is True


def test_asking_by_id_runs_the_check_on_a_foreign_image(monkeypatch) -> None:
    monkeypatch.setattr(service.shutil, "which", lambda name: None)
    monkeypatch.setattr(service.os, "access", lambda path, mode: False)
    outcome = service.check_jupyter(Context(only=("service.jupyter",)))
    assert outcome.status == SKIP and "no Jupyter server" in outcome.summary
    layered = service.check_jupyter(Context(labels=LAYERED))
    assert layered.status == FAIL, "an image labelled with the layer must have the server"


def test_requested_ids_reach_the_check_child() -> None:
    argv = Context(only=("service.ssh",)).to_argv()
    assert argv[argv.index("--only") + 1] == "service.ssh"


def test_password_and_root_settings_are_named() -> None:
    config = {
        "passwordauthentication": "yes",
        "permitrootlogin": "yes",
        "usepam": "yes",
        "kbdinteractiveauthentication": "yes",
        "permitemptypasswords": "no",
    }
    problems = " | ".join(service._config_problems(config))
    assert "PasswordAuthentication yes" in problems
    assert "PermitRootLogin yes" in problems
    assert "keyboard-interactive" in problems
    key_only = {
        "passwordauthentication": "no",
        "permitrootlogin": "no",
        "usepam": "no",
        "kbdinteractiveauthentication": "no",
    }
    assert service._config_problems(key_only) == []


def _serve_one_websocket(listener: socket.socket, reply: str) -> None:
    conn, _ = listener.accept()
    with conn:
        request = b""
        while b"\r\n\r\n" not in request:
            request += conn.recv(4096)
        key = next(
            line.split(b": ", 1)[1]
            for line in request.split(b"\r\n")
            if line.startswith(b"Sec-WebSocket-Key")
        )
        accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        conn.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        head = conn.recv(2)
        size = head[1] & 0x7F
        if size == 126:
            size = struct.unpack(">H", conn.recv(2))[0]
        mask = conn.recv(4)
        data = b""
        while len(data) < size:
            data += conn.recv(size - len(data))
        sent = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        assert json.loads(sent)["header"]["msg_type"] == "execute_request"
        payload = reply.encode()
        # A long reply in two fragments (text frame + continuation), unmasked as servers send.
        half = len(payload) // 2
        conn.sendall(bytes([0x01, 126]) + struct.pack(">H", half) + payload[:half])
        conn.sendall(bytes([0x80, 126]) + struct.pack(">H", len(payload) - half) + payload[half:])


def test_websocket_client_speaks_masked_frames_and_joins_fragments() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    reply = json.dumps({"msg_type": "stream", "content": {"text": "x" * 300}})
    server = threading.Thread(target=_serve_one_websocket, args=(listener, reply))
    server.start()
    channel = service._WebSocket(listener.getsockname()[1], "/api/kernels/k/channels", {"A": "b"})
    channel.send(json.dumps({"header": {"msg_type": "execute_request"}, "pad": "y" * 200}))
    assert channel.receive() == reply
    channel.close()
    server.join(timeout=10)
    listener.close()
