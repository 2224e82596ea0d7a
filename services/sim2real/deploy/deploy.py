"""Put the jetson-runtime image and a model on a robot's Docker engine and (re)start the node.

Everything goes over the Docker API (the docker SDK), so the robot needs nothing but its engine:
``ssh://user@robot`` (through the system's ssh client, so ~/.ssh/config and agents apply),
``unix://`` or ``tcp://``; no host: ``$DOCKER_HOST`` or the local engine. Three steps:

1. the image: loaded from a ``docker save`` tarball (``load``: air-gapped robots), or pulled
   (``pull``: always, missing, never);
2. the model: the file and its manifest (the node reads the preprocessing and the action space from
   the manifest, and checks the sha256) are copied into a named volume on the device, into a folder
   named after the model's sha256, so that earlier models stay there for a roll-back;
3. the node: the container of that name is replaced by one running ``sim2real serve --model ...``
   with host networking (DDS discovery), the host's IPC (DDS shared memory), the NVIDIA runtime and a
   restart policy. The new one must stay up for ``wait_s`` seconds; otherwise it is removed and the
   previous container, kept aside until then, is started again.
"""

from __future__ import annotations

import io
import os
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from sim2real.contracts.manifest import manifest_path, read_manifest

MODEL_DIR = "/models"
RESTART_POLICIES = ("no", "always", "unless-stopped", "on-failure")
PULL_POLICIES = ("always", "missing", "never")
DEFAULT_IMAGE = "sim2real/jetson-runtime:latest"
LABEL_SHA = "org.sim2real.model.sha256"
LABEL_ROLE = "org.sim2real.role"


@dataclass
class DeployConfig:
    model: Path
    host: str | None = None
    image: str = DEFAULT_IMAGE
    name: str = "sim2real-runtime"
    load: Path | None = None
    pull: str = "missing"
    runtime: str | None = "nvidia"
    restart: str = "unless-stopped"
    volume: str = "sim2real-models"
    env: dict[str, str] = field(default_factory=dict)
    node_args: list[str] = field(default_factory=list)
    wait_s: float = 5.0

    def validate(self) -> None:
        if self.pull not in PULL_POLICIES:
            raise ValueError(f"pull must be one of {', '.join(PULL_POLICIES)} (got {self.pull!r})")
        if self.restart not in RESTART_POLICIES:
            raise ValueError(f"restart must be one of {', '.join(RESTART_POLICIES)} (got {self.restart!r})")
        if not self.name or "/" in self.name:
            raise ValueError(f"bad container name {self.name!r}")
        if self.wait_s < 0:
            raise ValueError("wait_s must be at least 0")
        if self.load is not None and not Path(self.load).is_file():
            raise FileNotFoundError(f"image tarball not found: {self.load}")
        parse_host(self.host)


def parse_host(host: str | None) -> dict:
    """docker.DockerClient keyword arguments for ``host``; {} means $DOCKER_HOST or the local engine.

    ``user@robot`` and ``robot`` mean ``ssh://user@robot`` / ``ssh://robot``. ssh goes through the
    system's ssh client (``use_ssh_client``), so keys, agents and ~/.ssh/config work as in a shell.
    """
    if host is None or not host.strip():
        return {}
    text = host.strip()
    if "://" not in text:
        text = f"ssh://{text}"
    url = urlparse(text)
    if url.scheme == "ssh":
        if not url.hostname:
            raise ValueError(f"no host name in {host!r} (use ssh://user@robot)")
        return {"base_url": text, "use_ssh_client": True}
    if url.scheme in ("unix", "npipe"):
        if not url.path:
            raise ValueError(f"no socket path in {host!r}")
        return {"base_url": text}
    if url.scheme in ("tcp", "http", "https"):
        if not url.hostname:
            raise ValueError(f"no host name in {host!r}")
        return {"base_url": text}
    raise ValueError(f"unsupported Docker host {host!r}: use ssh://user@robot, unix:///path or tcp://host:port")


def check_ssh(base_url: str, timeout_s: int = 15) -> None:
    """Reach the device with the system's ssh client first, so a failure is one line, not the SDK's.

    ``BatchMode`` makes ssh fail instead of prompting (the SDK cannot answer a prompt either).
    """
    import importlib.util
    import shutil
    import subprocess

    if importlib.util.find_spec("paramiko") is None:
        raise RuntimeError("ssh:// hosts need paramiko, which the docker SDK imports for them "
                           "(pip install 'sim2real[deploy]')")
    ssh = shutil.which("ssh")
    if ssh is None:
        raise RuntimeError("ssh:// hosts need the ssh client (openssh-client), which is not installed")
    url = urlparse(base_url)
    target = f"{url.username}@{url.hostname}" if url.username else url.hostname
    command = [ssh, "-o", "BatchMode=yes", "-o", f"ConnectTimeout={timeout_s}",
               *(["-p", str(url.port)] if url.port else []), "--", target, "true"]
    try:
        result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=timeout_s + 5)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"cannot reach {base_url} over ssh: no answer within {timeout_s} s") from None
    if result.returncode != 0:
        lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        reason = lines[-1] if lines else f"ssh exited with status {result.returncode}"
        raise RuntimeError(f"cannot reach {base_url} over ssh: {reason}")


def connect(host: str | None, timeout_s: int = 120):
    """A docker client for ``host`` that has answered a ping."""
    try:
        import docker
    except ImportError:
        raise RuntimeError("the docker SDK is not installed (pip install 'sim2real[deploy]')") from None
    kwargs = parse_host(host)
    if kwargs.get("use_ssh_client"):
        check_ssh(kwargs["base_url"])
    where = host or os.environ.get("DOCKER_HOST") or "the local Docker engine"
    try:
        client = docker.DockerClient(timeout=timeout_s, **kwargs) if kwargs else docker.from_env(timeout=timeout_s)
        client.ping()
    except docker.errors.DockerException as exc:
        raise RuntimeError(f"cannot reach {where}: {_one_line(exc)}") from None
    return client


def model_files(model: Path) -> tuple[str, list[Path]]:
    """The model's sha256 (checked against its manifest) and the files to ship: model + manifest."""
    model = Path(model)
    if not model.is_file():
        raise FileNotFoundError(f"model not found: {model}")
    manifest = read_manifest(model, verify=True)  # a missing or stale manifest fails here, not on the robot
    return manifest["sha256"], [model, manifest_path(model)]


def check_node_args(node_args: list[str], model: Path) -> None:
    """Refuse, before anything is shipped, node arguments the node would refuse at start.

    The same check as the node's own (``NodeParams.safety_envelope`` against the model's manifest),
    on the flags and ``--ros-args -p`` values; a ``--params-file`` on the device is checked by the
    node there, and a node that does not start is rolled back.
    """
    from sim2real.runtime.cli import serve_overrides
    from sim2real.runtime.node import NodeParams

    overrides = serve_overrides(node_args)
    overrides.pop("model_path", None)
    try:
        params = NodeParams(**{**overrides, "model_path": str(model)})
    except TypeError as exc:
        raise ValueError(f"node arguments: {exc}") from None
    params.validate()
    params.safety_envelope(read_manifest(model, verify=False))


def deploy(config: DeployConfig, client=None, log: Callable[[str], None] = lambda _m: None) -> dict:
    """Run the three steps; return what was deployed (host, container, image, model path and sha256)."""
    import docker

    config.validate()
    model = Path(config.model).resolve()
    sha, files = model_files(model)
    check_node_args(config.node_args, model)
    client = client or connect(config.host)
    try:
        image = ensure_image(client, config, log)
        model_path = upload_model(client, image, config.volume, sha, files, log)
        container = replace_container(client, image, config, model_path, sha, log)
    except docker.errors.DockerException as exc:
        raise RuntimeError(_one_line(exc)) from None
    return {"host": config.host or os.environ.get("DOCKER_HOST") or "local", "container": container.name,
            "id": container.short_id, "image": config.image, "image_id": image.id, "model": model_path,
            "model_sha256": sha, "status": container.status}


def ensure_image(client, config: DeployConfig, log: Callable[[str], None]):
    """The image on the device: loaded from the tarball, or pulled according to ``config.pull``."""
    import docker

    if config.load is not None:
        log(f"loading {config.load} ({Path(config.load).stat().st_size / 1e6:.0f} MB)")
        with open(config.load, "rb") as tarball:
            loaded = client.images.load(tarball)
        try:
            return client.images.get(config.image)
        except docker.errors.ImageNotFound:
            tags = sorted(tag for image in loaded for tag in image.tags)
            raise ValueError(f"{config.load} holds {', '.join(tags) or 'no tagged image'}, not {config.image}") from None
    if config.pull != "always":
        try:
            return client.images.get(config.image)
        except docker.errors.ImageNotFound:
            if config.pull == "never":
                raise ValueError(f"image {config.image} is not on the device (and pull is 'never'); "
                                 f"use --load with a `docker save` tarball") from None
    log(f"pulling {config.image}")
    repository, _, tag = config.image.rpartition(":") if ":" in config.image.split("/")[-1] else (config.image, "", "")
    try:
        return client.images.pull(repository, tag=tag or "latest")
    except docker.errors.APIError as exc:
        raise RuntimeError(f"cannot pull {config.image} on the device ({_one_line(exc)}); "
                           f"use --load with a `docker save` tarball") from None


def upload_model(client, image, volume: str, sha: str, files: list[Path], log: Callable[[str], None]) -> str:
    """Copy ``files`` into ``volume``/<sha[:16]>/ on the device; return the model's path in the node."""
    import docker

    try:
        client.volumes.get(volume)
    except docker.errors.NotFound:
        client.volumes.create(volume, labels={LABEL_ROLE: "models"})
    folder = sha[:16]
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        info = tarfile.TarInfo(folder)
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, int(time.time())
        tar.addfile(info)
        for path in files:
            info = tarfile.TarInfo(f"{folder}/{path.name}")
            info.size, info.mode, info.mtime = path.stat().st_size, 0o644, int(path.stat().st_mtime)
            with open(path, "rb") as handle:
                tar.addfile(info, handle)
    log(f"copying {files[0].name} (sha256 {sha[:12]}…) into volume {volume}")
    # A created, never started, container is enough to write into its volume over the API.
    helper = client.containers.create(image.id, entrypoint=["/bin/true"], user="0",
                                      volumes={volume: {"bind": MODEL_DIR, "mode": "rw"}},
                                      labels={LABEL_ROLE: "model-upload"}, network_disabled=True)
    try:
        if not helper.put_archive(MODEL_DIR, archive.getvalue()):
            raise RuntimeError(f"copying the model into volume {volume} failed")
    finally:
        helper.remove(force=True)
    return f"{MODEL_DIR}/{folder}/{files[0].name}"


def replace_container(client, image, config: DeployConfig, model_path: str, sha: str,
                      log: Callable[[str], None]):
    """Start the node as ``config.name``; keep the previous one aside until the new one has stayed up."""
    import docker

    previous = None
    try:
        previous = client.containers.get(config.name)
    except docker.errors.NotFound:
        pass
    if previous is not None:
        log(f"stopping the running {config.name} ({previous.short_id})")
        previous.stop(timeout=10)
        previous.rename(f"{config.name}-previous-{previous.short_id}")
    restart = {"Name": config.restart}
    if config.restart == "on-failure":
        restart["MaximumRetryCount"] = 5
    try:
        container = client.containers.run(
            image.id, command=["--model", model_path, *config.node_args], name=config.name, detach=True,
            network_mode="host", ipc_mode="host", restart_policy=restart, runtime=config.runtime or None,
            init=True, environment=config.env, volumes={config.volume: {"bind": MODEL_DIR, "mode": "ro"}},
            labels={LABEL_SHA: sha, LABEL_ROLE: "runtime", "org.sim2real.image": config.image})
        log(f"started {config.name} ({container.short_id}); watching it for {config.wait_s:g} s")
        _wait_up(container, config.wait_s)
    except (docker.errors.DockerException, RuntimeError) as exc:
        _roll_back(client, config.name, previous, log)
        message = _one_line(exc)
        if config.runtime and "runtime" in message.lower():
            message += f" (no '{config.runtime}' runtime on this engine? --runtime '' runs without it)"
        raise RuntimeError(message) from None
    if previous is not None:
        previous.remove(force=True)
    return container


def _wait_up(container, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        container.reload()
        state = container.attrs.get("State", {})
        if state.get("Restarting") or container.status in ("exited", "dead"):
            logs = container.logs(tail=15).decode(errors="replace").strip()
            raise RuntimeError(f"the node exited with code {state.get('ExitCode')}: {logs[-1500:] or 'no output'}")
        if time.monotonic() >= deadline:
            return
        time.sleep(0.25)


def _roll_back(client, name: str, previous, log: Callable[[str], None]) -> None:
    import docker

    try:
        client.containers.get(name).remove(force=True)
    except docker.errors.NotFound:
        pass
    if previous is not None:
        log(f"rolling back to {previous.short_id}")
        previous.rename(name)
        previous.start()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
