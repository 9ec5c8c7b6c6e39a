"""service checks: the user layer's JupyterLab and sshd, started inside the sandbox on loopback.

Both run only for images whose io.envkit.user-layer label names the service, or when asked for by id
(`--only service.jupyter`), which is how a foreign image with Jupyter or sshd installed gets them. The
sandbox has no network: everything talks to 127.0.0.1 inside the container.
"""

from __future__ import annotations

import base64
import glob
import json
import os
import pwd
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

from .context import Context
from .outcome import FAIL, NA, PASS, SKIP, WARN, Outcome

JUPYTER_START_S = 120.0
SSHD_START_S = 20.0
KERNEL_S = 120.0
START_SCRIPT = "envkit-start"
# The effective sshd settings a report shows (`sshd -T` names).
_AUTH_KEYS = (
    "port",
    "hostkey",
    "passwordauthentication",
    "kbdinteractiveauthentication",
    "permitemptypasswords",
    "permitrootlogin",
    "pubkeyauthentication",
    "usepam",
    "authorizedkeysfile",
)
SSHD_CONFIG = "/etc/ssh/sshd_config"
KERNEL_CODE = (
    "import sys, torch\n"
    "print('ENVKIT-KERNEL', sys.executable, torch.__version__, torch.cuda.is_available())\n"
)


def _not_applicable(ctx: Context, layer: str) -> Outcome | None:
    """N/A unless the image has the layer or the check was asked for by id."""
    layers = [part.strip() for part in (ctx.label("user-layer") or "").split(",")]
    if layer in layers or f"service.{layer}" in ctx.only:
        return None
    return Outcome(
        status=NA,
        summary=f"the image has no {layer} user layer",
        hint=f"to check a {layer} service an image has anyway, ask for it: --only service.{layer}",
        details={"not_applicable": True},
    )


def _layered(ctx: Context, layer: str) -> bool:
    return layer in (ctx.label("user-layer") or "").split(",")


# --- Jupyter -----------------------------------------------------------------------------------------


def check_jupyter(ctx: Context) -> Outcome:
    """service.jupyter: the server starts as the image would, refuses strangers, runs a torch kernel."""
    skipped = _not_applicable(ctx, "jupyter")
    if skipped:
        return skipped
    command = _jupyter_command(ctx)
    if command is None:
        status = FAIL if _layered(ctx, "jupyter") else SKIP
        return Outcome(
            status=status,
            summary="no Jupyter server in this image (neither envkit-start nor jupyter on PATH)",
            hint="rebuild the image with user_layer: jupyter" if status == FAIL else None,
        )
    runtime = tempfile.mkdtemp(prefix="envkit-jupyter-")
    log_path = os.path.join(runtime, "server.log")
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": runtime}
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    details: dict[str, Any] = {"command": command}
    try:
        info = _wait_for_runtime_file(runtime, server)
        if info is None:
            return Outcome(
                status=FAIL,
                summary=f"the Jupyter server did not come up within {JUPYTER_START_S:.0f} s",
                details={**details, "log": _tail(log_path)},
            )
        return _judge_jupyter(info, server, details, log_path)
    finally:
        _stop(server)
        shutil.rmtree(runtime, ignore_errors=True)


def _jupyter_command(ctx: Context) -> list[str] | None:
    script = shutil.which(START_SCRIPT)
    if script and _layered(ctx, "jupyter"):
        return [script, "jupyter"]
    here = os.path.join(os.path.dirname(sys.executable), "jupyter")
    jupyter = here if os.access(here, os.X_OK) else shutil.which("jupyter")
    if jupyter is None:
        return None
    port = str(_free_port())
    return [jupyter, "server", "--no-browser", "--ip=127.0.0.1", f"--port={port}"]


def _wait_for_runtime_file(runtime: str, server: subprocess.Popen[bytes]) -> dict[str, Any] | None:
    deadline = time.monotonic() + JUPYTER_START_S
    while time.monotonic() < deadline and server.poll() is None:
        for path in glob.glob(os.path.join(runtime, "jpserver-*.json")):
            try:
                with open(path, encoding="utf-8") as handle:
                    info = json.load(handle)
            except (OSError, ValueError):
                continue
            if _http(int(info["port"]), "/api")[0] == 200:
                return dict(info)
        time.sleep(0.5)
    return None


def _judge_jupyter(
    info: dict[str, Any], server: subprocess.Popen[bytes], details: dict[str, Any], log_path: str
) -> Outcome:
    port = int(info["port"])
    token = str(info.get("token") or "")
    details = {**details, "port": port, "token_set": bool(token), "password_set": bool(info.get("password"))}
    strangers = {path: _http(port, path)[0] for path in ("/api/status", "/api/kernels")}
    details["unauthenticated"] = strangers
    opened = [path for path, code in strangers.items() if code == 200]
    if opened:
        return Outcome(
            status=FAIL,
            summary=f"the Jupyter server answers {', '.join(opened)} without a token or password "
            f"(token {'set' if token else 'empty'}): anyone who reaches port {port} runs code in the "
            "container",
            hint="never start Jupyter with an empty token; set JUPYTER_TOKEN at run time or let the "
            "server generate one (remove `token = ''` / `--IdentityProvider.token=` from its config)",
            details=details,
        )
    if not token:
        return Outcome(
            status=WARN,
            summary="the Jupyter server refuses strangers but has no token (a password?): kernel not tried",
            details=details,
        )
    auth = {"Authorization": f"token {token}"}
    status, _ = _http(port, "/api/status", headers=auth)
    if status != 200:
        return Outcome(
            status=FAIL,
            summary=f"the Jupyter server refused its own token on /api/status (HTTP {status})",
            details={**details, "log": _tail(log_path)},
        )
    kernel = _run_kernel(port, auth)
    details["kernel"] = kernel
    _http(port, "/api/shutdown", method="POST", headers=auth)
    try:
        server.wait(timeout=20)
        details["stopped_cleanly"] = server.returncode == 0
    except subprocess.TimeoutExpired:
        details["stopped_cleanly"] = False
    if kernel.get("error"):
        return Outcome(
            status=FAIL,
            summary=f"the Jupyter kernel could not import torch: {kernel['error']}",
            hint="the layer's kernel must be the image's torch Python (install jupyterlab into that "
            "environment)",
            details={**details, "log": _tail(log_path)},
        )
    summary = (
        f"Jupyter refuses unauthenticated API requests and accepts its token; a kernel ran torch "
        f"{kernel['torch']} at {kernel['executable']} (cuda available: {kernel['cuda_available']})"
    )
    if not details["stopped_cleanly"]:
        return Outcome(
            status=WARN, summary=summary + "; the server did not stop on /api/shutdown", details=details
        )
    return Outcome(status=PASS, summary=summary, details=details)


def _run_kernel(port: int, auth: dict[str, str]) -> dict[str, Any]:
    status, body = _http(port, "/api/kernels", method="POST", headers=auth, data=b"{}")
    if status not in (200, 201):
        return {"error": f"starting a kernel failed (HTTP {status}): {body[:200]!r}"}
    kernel_id = json.loads(body)["id"]
    try:
        return _execute(port, kernel_id, auth, KERNEL_CODE)
    except (OSError, ValueError, KeyError) as error:
        return {"error": f"talking to the kernel failed: {error}"}
    finally:
        _http(port, f"/api/kernels/{kernel_id}", method="DELETE", headers=auth)


def _execute(port: int, kernel_id: str, auth: dict[str, str], code: str) -> dict[str, Any]:
    session = uuid.uuid4().hex
    channel = _WebSocket(port, f"/api/kernels/{kernel_id}/channels?session_id={session}", auth)
    try:
        msg_id = uuid.uuid4().hex
        channel.send(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "username": "envkit",
                        "session": session,
                        "msg_type": "execute_request",
                        "version": "5.3",
                        "date": "",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "buffers": [],
                    "channel": "shell",
                    "content": {
                        "code": code,
                        "silent": False,
                        "store_history": False,
                        "user_expressions": {},
                        "allow_stdin": False,
                        "stop_on_error": True,
                    },
                }
            )
        )
        output, error = "", None
        deadline = time.monotonic() + KERNEL_S
        while time.monotonic() < deadline:
            message = json.loads(channel.receive())
            if (message.get("parent_header") or {}).get("msg_id") != msg_id:
                continue
            kind = message.get("msg_type") or message["header"]["msg_type"]
            content = message.get("content") or {}
            if kind == "stream":
                output += str(content.get("text", ""))
            elif kind == "error":
                error = f"{content.get('ename')}: {content.get('evalue')}"
            elif kind == "execute_reply":
                break
    finally:
        channel.close()
    found = re.search(r"ENVKIT-KERNEL (\S+) (\S+) (True|False)", output)
    if error or not found:
        return {"error": error or f"no answer from the kernel (output {output[:200]!r})"}
    return {"executable": found[1], "torch": found[2], "cuda_available": found[3] == "True"}


class _WebSocket:
    """Just enough of RFC 6455 for one kernel channel: text frames out (masked), text frames in."""

    def __init__(self, port: int, path: str, headers: dict[str, str]) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=KERNEL_S)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._recv()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line = head.split(b"\r\n", 1)[0].decode(errors="replace")
        if " 101 " not in status_line:
            raise OSError(f"websocket refused: {status_line}")

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise OSError("the server closed the websocket")
        return chunk

    def _read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self.buffer += self._recv()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def send(self, text: str) -> None:
        payload = text.encode()
        header = bytearray([0x81])
        if len(payload) < 126:
            header.append(0x80 | len(payload))
        elif len(payload) < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack(">H", len(payload))
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", len(payload))
        mask = os.urandom(4)
        self.sock.sendall(bytes(header) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def receive(self) -> str:
        message = b""
        while True:
            first, second = self._read(2)
            size = second & 0x7F
            if size == 126:
                size = struct.unpack(">H", self._read(2))[0]
            elif size == 127:
                size = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if second & 0x80 else b""
            payload = self._read(size)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            opcode = first & 0x0F
            if opcode == 0x8:
                raise OSError("the server closed the websocket")
            if opcode in (0x9, 0xA):
                continue
            message += payload
            if first & 0x80:
                return message.decode("utf-8", errors="replace")

    def close(self) -> None:
        self.sock.close()


def _http(
    port: int,
    path: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    data: bytes | None = None,
) -> tuple[int, bytes]:
    """(HTTP status, body) of a request to 127.0.0.1:port; status 0 when nothing answered."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method=method, headers=headers or {}, data=data
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (OSError, ValueError):
        return 0, b""


# --- sshd --------------------------------------------------------------------------------------------


def check_ssh(ctx: Context) -> Outcome:
    """service.ssh: key-only sshd with no baked host key; a throw-away key logs in and imports torch."""
    skipped = _not_applicable(ctx, "ssh")
    if skipped:
        return skipped
    sshd = shutil.which("sshd") or ("/usr/sbin/sshd" if os.access("/usr/sbin/sshd", os.X_OK) else None)
    if sshd is None:
        status = FAIL if _layered(ctx, "ssh") else SKIP
        return Outcome(status=status, summary="no sshd in this image")
    missing = [tool for tool in ("ssh", "ssh-keygen") if shutil.which(tool) is None]
    if missing:
        return Outcome(
            status=FAIL,
            summary=f"no {' or '.join(missing)} in this image to test sshd with",
            hint="install openssh-client beside openssh-server",
        )
    problems: list[str] = []
    details: dict[str, Any] = {"sshd": sshd}
    work = tempfile.mkdtemp(prefix="envkit-ssh-")
    try:
        host_key, client_key = os.path.join(work, "host_key"), os.path.join(work, "client_key")
        for key in (host_key, client_key):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key],
                check=True,
                capture_output=True,
                timeout=30,
            )
        base = [sshd, "-f", SSHD_CONFIG, "-h", host_key, "-o", f"PidFile={work}/sshd.pid"]
        test = subprocess.run([*base, "-t"], capture_output=True, text=True, timeout=30)
        if test.returncode != 0:
            return Outcome(
                status=FAIL,
                summary=f"`sshd -t` rejects {SSHD_CONFIG}: {test.stderr.strip()[-300:]}",
                details=details,
            )
        effective = _effective_config([*base, "-T"])
        details["config"] = {key: effective.get(key) for key in _AUTH_KEYS}
        baked = _baked_host_keys(effective)
        details["baked_host_keys"] = baked
        if baked:
            problems.append(
                f"the image holds SSH host private keys ({', '.join(baked)}): every container from it "
                "shares one host identity, so one leaked image lets anyone impersonate all of them"
            )
        problems += _config_problems(effective)
        login = _try_logins(base, work, client_key, details)
        if login:
            problems.append(login)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if problems:
        return Outcome(
            status=FAIL,
            summary="; ".join(problems),
            hint="sshd must be key-only (PasswordAuthentication no, KbdInteractiveAuthentication no, "
            "PermitRootLogin no) and make its host keys at first start (ssh-keygen in the entrypoint)",
            details=details,
        )
    if details.get("login") == "not tried":
        return Outcome(
            status=WARN,
            summary="sshd's configuration is key-only and the image has no host "
            f"key, but no login was tried: {details['login_reason']}",
            details=details,
        )
    return Outcome(
        status=PASS,
        summary="sshd is key-only, the image holds no host key, password login is refused and a "
        f"throw-away key logged in and imported torch {details.get('torch', '?')}",
        details=details,
    )


def _effective_config(command: list[str]) -> dict[str, str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    config: dict[str, str] = {}
    for line in done.stdout.splitlines():
        name, _, value = line.partition(" ")
        if name == "hostkey":
            config["hostkey"] = (config.get("hostkey", "") + " " + value).strip()
        else:
            config.setdefault(name, value)
    return config


def _baked_host_keys(config: dict[str, str]) -> list[str]:
    found = set()
    for root, _, files in os.walk("/etc/ssh"):
        for name in files:
            path = os.path.join(root, name)
            if re.fullmatch(r"ssh_host_\w+_key", name) or _looks_private(path):
                found.add(path)
    for path in config.get("hostkey", "").split():
        if os.path.exists(path) and "envkit-ssh-" not in path:
            found.add(path)
    return sorted(found)


def _looks_private(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return b"PRIVATE KEY-----" in handle.read(4096)
    except OSError:
        return False


def _config_problems(config: dict[str, str]) -> list[str]:
    problems = []
    if config.get("passwordauthentication") == "yes":
        problems.append("sshd allows password login (PasswordAuthentication yes)")
    kbd = config.get("kbdinteractiveauthentication", config.get("challengeresponseauthentication"))
    if kbd == "yes" and config.get("usepam") == "yes":
        problems.append("sshd allows keyboard-interactive login through PAM (passwords)")
    if config.get("permitemptypasswords") == "yes":
        problems.append("sshd permits empty passwords (PermitEmptyPasswords yes)")
    if config.get("permitrootlogin") == "yes":
        problems.append("sshd lets root log in with a password (PermitRootLogin yes)")
    return problems


def _try_logins(base: list[str], work: str, client_key: str, details: dict[str, Any]) -> str | None:
    """Start sshd on loopback; returns a problem, or None (details say what was tried)."""
    try:
        user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        user = ""
    if os.geteuid() == 0 or not user:
        details["login"] = "not tried"
        details["login_reason"] = (
            "the probe runs as root, and sshd as root needs capabilities the sandbox drops"
            if user
            else f"uid {os.getuid()} has no account to log in as"
        )
        return None
    shutil.copyfile(client_key + ".pub", os.path.join(work, "authorized_keys"))
    port = _free_port()
    log_path = os.path.join(work, "sshd.log")
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [
                *base,
                "-D",
                "-e",
                "-p",
                str(port),
                "-o",
                "ListenAddress=127.0.0.1",
                "-o",
                f"AuthorizedKeysFile={work}/authorized_keys",
                "-o",
                "StrictModes=no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
    try:
        if not _wait_for_port(port, server):
            _stop(server)
            return f"sshd did not listen on 127.0.0.1:{port}: {_tail(log_path, 5).strip()}"
        client = [
            "ssh",
            "-p",
            str(port),
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=20",
            "-o",
            "LogLevel=ERROR",
        ]
        refused = subprocess.run(
            [
                *client,
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "PreferredAuthentications=password,keyboard-interactive",
                f"{user}@127.0.0.1",
                "true",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        methods = re.search(r"Permission denied \(([^)]*)\)", refused.stderr)
        details["methods_offered"] = methods[1] if methods else None
        if refused.returncode == 0:
            return "sshd let a client in with neither key nor password"
        if methods and re.search(r"password|keyboard-interactive", methods[1]):
            return f"sshd offers password login to clients ({methods[1]})"
        code = "python -c 'import torch; print(\"ENVKIT-SSH\", torch.__version__)'"
        keyed = subprocess.run(
            [*client, "-i", client_key, "-o", "IdentitiesOnly=yes", f"{user}@127.0.0.1", code],
            capture_output=True,
            text=True,
            timeout=120,
        )
        found = re.search(r"ENVKIT-SSH (\S+)", keyed.stdout)
        details["login"] = "key"
        if keyed.returncode != 0 or not found:
            return (
                f'a key login as {user} did not run `python -c "import torch"` (exit '
                f"{keyed.returncode}): {(keyed.stderr or keyed.stdout).strip()[-300:]}"
            )
        details["torch"] = found[1]
        return None
    finally:
        _stop(server)


def _wait_for_port(port: int, server: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + SSHD_START_S
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                return True
        except OSError:
            time.sleep(0.2)
    return False


# --- shared ------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a service and everything it started (its own session)."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(path: str, lines: int = 20) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError:
        return ""
