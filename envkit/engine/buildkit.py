"""Engine backend that builds through a `docker build` CLI with BuildKit (DOCKER_BUILDKIT=1).

docker-py cannot pass build secrets or use `RUN --mount=type=cache` (docker/docker-py#2230, #2174), so
this backend runs the CLI for `build` and inherits everything else from DockerSdkEngine. Not every
`docker` CLI can do it: a new CLI without the buildx plugin refuses BuildKit builds, so the backend
probes the candidates and uses the first that works.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from envkit import safety
from envkit.engine import MANAGED_LABEL, BuildFailed, BuildRequest, build_failure
from envkit.engine.docker_sdk import LOG_TAIL_LINES, DockerSdkEngine, unreachable
from envkit.errors import EngineUnavailable, UnsafeValueError, UsageError
from envkit.scratch import scratch_dir

CLI_ENV = "ENVKIT_DOCKER_CLI"
# Where distributions install the docker CLI, tried after every `docker` on PATH.
WELL_KNOWN_CLIS = ("/usr/bin/docker", "/usr/local/bin/docker", "/bin/docker", "/snap/bin/docker")
PROBE_TIMEOUT_S = 20
_SECRET_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
_UNREACHABLE_MARKERS = ("Cannot connect to the Docker daemon", "error during connect")


def cli_candidates(env: Mapping[str, str], well_known: Sequence[str] = WELL_KNOWN_CLIS) -> list[str]:
    """Docker CLIs to try, in order: $ENVKIT_DOCKER_CLI alone when set, else each `docker` on PATH,
    then the well-known locations; duplicates (same real file) are dropped."""
    if env.get(CLI_ENV):
        return [env[CLI_ENV]]
    on_path = [str(Path(d) / "docker") for d in env.get("PATH", "").split(os.pathsep) if d]
    seen: set[str] = set()
    found: list[str] = []
    for candidate in (*on_path, *well_known):
        if not (os.path.isfile(candidate) and os.access(candidate, os.X_OK)):
            continue
        real = os.path.realpath(candidate)
        if real not in seen:
            seen.add(real)
            found.append(candidate)
    return found


def probe_cli(cli: str) -> str | None:
    """None when `cli` can do BuildKit builds with secrets; otherwise why not (one line)."""
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    try:
        done = subprocess.run(
            [cli, "build", "--help"], env=env, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"could not run it ({error})"
    output = done.stdout + done.stderr
    if done.returncode != 0:
        return _first_line(output) or f"exit status {done.returncode}"
    if "--secret" not in output:
        return "its `build` has no --secret option (no BuildKit)"
    return None


def find_cli(candidates: Iterable[str], probe: Callable[[str], str | None] = probe_cli) -> str:
    """The first candidate CLI that passes `probe`; EngineUnavailable listing every refusal otherwise."""
    refusals = []
    for cli in candidates:
        why_not = probe(cli)
        if why_not is None:
            return cli
        refusals.append(f"{cli}: {why_not}")
    tried = "; ".join(refusals) or "no `docker` executable on PATH or in " + ", ".join(WELL_KNOWN_CLIS)
    raise EngineUnavailable(
        f"no docker CLI that can build with BuildKit was found (tried: {tried})",
        hint=f"install a docker CLI with BuildKit (the buildx plugin, or Debian's docker.io), "
        f"or point {CLI_ENV} at one; or use the 'docker' backend (no build secrets)",
    )


def build_argv(cli: str, req: BuildRequest, iidfile: Path) -> list[str]:
    """The `docker build` command line for `req` (a list: never passed through a shell)."""
    argv = [cli, "build", "--progress=plain", "--iidfile", str(iidfile)]
    argv += ["--file", str(req.context_dir / req.dockerfile)]
    for tag in req.tags:
        argv += ["--tag", tag]
    for key, value in sorted({**req.labels, MANAGED_LABEL: "true"}.items()):
        argv += ["--label", f"{_key(key, 'label')}={value}"]
    for key, value in sorted(req.build_args.items()):
        argv += ["--build-arg", f"{_key(key, 'build arg')}={value}"]
    if req.inline_cache:
        argv += ["--build-arg", "BUILDKIT_INLINE_CACHE=1"]  # a later build can --cache-from this image
    for ref in req.cache_from:
        argv += ["--cache-from", safety.image_ref(ref)]
    for secret_id, src in sorted(req.secrets.items()):
        argv += ["--secret", _secret(secret_id, src)]
    if req.pull:
        argv.append("--pull")
    if req.no_cache:
        argv.append("--no-cache")
    if req.network_mode:
        argv += ["--network", req.network_mode]
    argv.append(str(req.context_dir))
    return argv


class BuildKitEngine(DockerSdkEngine):
    """DockerSdkEngine whose `build` runs a BuildKit-capable `docker build` CLI."""

    backend = "buildkit"

    def __init__(self, host: str | None = None, env: Mapping[str, str] | None = None) -> None:
        super().__init__(host=host)
        self._env = dict(os.environ if env is None else env)
        self._cli: str | None = None

    @property
    def cli(self) -> str:
        """The docker CLI this engine builds with (probed once per instance)."""
        if self._cli is None:
            self._cli = find_cli(cli_candidates(self._env))
        return self._cli

    def build(self, req: BuildRequest, on_line: Callable[[str], None]) -> str:
        if self._product == "Podman":  # known once info() answered, as every build asks first
            raise UsageError(
                f"the engine at {self.host} is Podman, whose Docker-compatible API has no BuildKit "
                "(no --secret, no --cache-mounts)",
                hint="build without --buildkit: the CA bundle is then copied into the throw-away "
                "dependency stage only; or point DOCKER_HOST at a Docker engine",
            )
        if not req.context_dir.is_dir() or not (req.context_dir / req.dockerfile).is_file():
            raise BuildFailed(f"no {req.dockerfile} in the build context {req.context_dir}")
        env = {**self._env, "DOCKER_BUILDKIT": "1"}
        if self._host_arg:
            env["DOCKER_HOST"] = self._host_arg
        # Locked while the build runs, so `envkit gc` cannot remove it under a long build.
        with scratch_dir("envkit-build-") as tmp:
            iidfile = tmp / "iid"
            rc, tail = _run_streaming(build_argv(self.cli, req, iidfile), env, on_line)
            if rc != 0:
                raise self._failure(req, rc, tail)
            return iidfile.read_text().strip()

    def _failure(self, req: BuildRequest, rc: int, tail: str) -> Exception:
        if any(marker in tail for marker in _UNREACHABLE_MARKERS):
            return unreachable(self.host, _first_line(tail))
        hint = None
        first = (req.context_dir / req.dockerfile).read_text(errors="replace").lstrip().split("\n", 1)[0]
        if first.replace(" ", "").lower().startswith("#syntax="):
            hint = (
                "the Dockerfile's '# syntax=' line makes BuildKit pull a frontend image; remove it "
                "where no image registry can be reached"
            )
        message = f"docker build ({self.cli}) failed with exit status {rc}"
        return build_failure(message, evidence=_engine_errors(tail), log_tail=tail, hint=hint)


def _engine_errors(tail: str) -> str:
    """The lines of a BuildKit log that are BuildKit's own errors, not a RUN step's output (`#N 1.2 ...`)."""
    return "\n".join(line for line in tail.splitlines() if line.startswith(("ERROR", "error", "failed")))


def _run_streaming(
    argv: list[str], env: Mapping[str, str], on_line: Callable[[str], None]
) -> tuple[int, str]:
    tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
    try:
        proc = subprocess.Popen(
            argv,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
        )
    except OSError as error:
        hint = f"set {CLI_ENV} to a docker CLI"
        raise EngineUnavailable(f"cannot run {argv[0]}: {error}", hint=hint) from error
    assert proc.stdout is not None
    with proc:
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            tail.append(line)
            on_line(line)
    return proc.returncode, "\n".join(tail)


def _key(key: str, what: str) -> str:
    if not key or "=" in key or any(c.isspace() for c in key):
        raise UnsafeValueError(f"{what} name {key!r} must be non-empty, without '=' or whitespace")
    return key


def _secret(secret_id: str, src: Path) -> str:
    if not _SECRET_ID.match(secret_id):
        raise UnsafeValueError(f"build secret id {secret_id!r} may only hold letters, digits, '_', '.', '-'")
    # The CLI parses --secret as CSV: a comma or quote in the path would split it.
    if any(c in str(src) for c in ',"\n'):
        raise UnsafeValueError(f"build secret file {src} has a comma, quote or newline in its path")
    if not src.is_file():
        raise UnsafeValueError(f"build secret {secret_id!r}: {src} is not a file")
    return f"id={secret_id},src={src}"


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")
