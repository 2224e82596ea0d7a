"""`sim2real deploy` against the local engine through DOCKER_HOST (unix socket): the image, the model
in a volume, the node container with host networking, a restart policy and the roll-back; `--load`
from a `docker save` tarball. The ssh:// form is tested for its argument handling only."""

from __future__ import annotations

import argparse
import os
import time

import pytest
from stackhelpers import run, under_ci

# The first engine test here may be the one that builds the images (a few minutes on a fresh machine).
pytestmark = [pytest.mark.timeout(3600)]
ROS_ENV = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_LOCALHOST_ONLY": "1",
           "ROS_DOMAIN_ID": str(150 + os.getpid() % 80)}
SOCKET = "unix:///var/run/docker.sock"


# ---- argument handling (no engine) ----------------------------------------------------------------

def test_parse_host_forms():
    from sim2real.deploy.deploy import parse_host

    assert parse_host("ssh://user@robot") == {"base_url": "ssh://user@robot", "use_ssh_client": True}
    assert parse_host("user@robot") == {"base_url": "ssh://user@robot", "use_ssh_client": True}
    assert parse_host("ssh://user@robot:2222") == {"base_url": "ssh://user@robot:2222", "use_ssh_client": True}
    assert parse_host(SOCKET) == {"base_url": SOCKET}
    assert parse_host("tcp://10.0.0.5:2376") == {"base_url": "tcp://10.0.0.5:2376"}
    assert parse_host(None) == {} and parse_host("  ") == {}
    for bad in ("ftp://robot", "ssh://", "unix://"):
        with pytest.raises(ValueError):
            parse_host(bad)


def _parse(argv):
    from sim2real.deploy.cli import register

    parser = argparse.ArgumentParser(prog="sim2real")
    register(parser.add_subparsers(dest="verb", required=True))
    return parser.parse_args(["deploy", *argv])


def test_cli_arguments_make_the_config(tmp_path):
    from sim2real.deploy.cli import config_from_args

    (tmp_path / "latest" / "model").mkdir(parents=True)
    tarball = tmp_path / "runtime.tar"
    tarball.write_bytes(b"")
    args = _parse(["--host", "ssh://pi@robot", "--artifacts", str(tmp_path), "--load", str(tarball),
                   "--image", "sim2real/jetson-runtime:0.1.0", "--name", "node", "--env", "ROS_DOMAIN_ID=7",
                   "--runtime", "", "--restart", "always", "--node-args", "--forward-speed", "0.3"])
    config = config_from_args(args)
    assert config.host == "ssh://pi@robot"
    assert config.model == tmp_path / "latest" / "model" / "model.int8.onnx"  # relative: under --artifacts
    assert config.load == tarball and config.image == "sim2real/jetson-runtime:0.1.0" and config.name == "node"
    assert config.env == {"ROS_DOMAIN_ID": "7"} and config.runtime is None and config.restart == "always"
    assert config.node_args == ["--forward-speed", "0.3"]
    defaults = config_from_args(_parse([]))
    assert defaults.runtime == "nvidia" and defaults.restart == "unless-stopped" and defaults.pull == "missing"
    with pytest.raises(SystemExit):
        _parse(["--env", "NOEQUALS"])
    with pytest.raises(SystemExit):
        _parse(["--restart", "sometimes"])


def docker_sdk():
    """The docker SDK (the deploy extra): a failure under CI, a skip elsewhere when it is missing."""
    try:
        import docker
    except ImportError:
        message = "the docker SDK is not installed (pip install -e '.[deploy]')"
        if under_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return docker


def test_ssh_host_goes_to_the_sdk_with_the_system_ssh_client(monkeypatch):
    docker = docker_sdk()
    from sim2real.deploy import deploy as deploy_module

    seen = {}

    class FakeClient:
        def __init__(self, **kwargs):
            seen.update(kwargs)

        def ping(self):
            return True

    monkeypatch.setattr(docker, "DockerClient", FakeClient)
    monkeypatch.setattr(deploy_module, "check_ssh", lambda url: seen.setdefault("checked", url))
    deploy_module.connect("ssh://pi@robot")
    assert seen["base_url"] == "ssh://pi@robot" and seen["use_ssh_client"] is True
    assert seen["checked"] == "ssh://pi@robot"


def test_bad_input_fails_before_touching_any_engine(tmp_path, capsys):
    """Each is one line on stderr and exit code 2; none of them gets as far as connecting to the robot."""
    from helpers_models import tiny_model
    from sim2real.deploy.cli import main

    model = tiny_model(tmp_path / "model", name="model.int8.onnx")
    bare = tmp_path / "bare.onnx"
    bare.write_bytes(b"onnx")
    cases = [
        (["--host", "ftp://robot", "--model", str(model)], "unsupported Docker host"),
        (["--host", "ssh://pi@robot", "--model", str(tmp_path / "none.onnx")], "model not found"),
        (["--host", "ssh://pi@robot", "--model", str(bare)], "manifest"),
        (["--host", "ssh://pi@robot", "--model", str(model), "--load", str(tmp_path / "x.tar")], "tarball not found"),
    ]
    for argv, expected in cases:
        assert main(["deploy", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, (argv, err)


# ---- against the local engine -------------------------------------------------------------------

@pytest.fixture
def deployment(stack_images, tmp_path, monkeypatch):
    """A tiny model with its manifest, a unique container and volume name; removed afterwards."""
    docker = docker_sdk()
    from helpers_models import tiny_model

    monkeypatch.setenv("DOCKER_HOST", SOCKET)
    model = tiny_model(tmp_path / "model", name="model.int8.onnx")
    name = f"s2r-deploy-test-{os.getpid()}"
    client = docker.from_env()
    yield {"model": model, "name": name, "volume": f"{name}-models", "image": stack_images["jetson-runtime"],
           "client": client, "tmp": tmp_path}
    for container in client.containers.list(all=True, filters={"name": name}):
        container.remove(force=True)
    for volume in client.volumes.list(filters={"name": f"{name}-models"}):
        volume.remove(force=True)


def _config(d, **overrides):
    from sim2real.deploy.deploy import DeployConfig

    fields = {"model": d["model"], "host": None, "image": d["image"], "name": d["name"], "volume": d["volume"],
              "runtime": None, "env": ROS_ENV, "wait_s": 4.0, "pull": "never"}
    return DeployConfig(**{**fields, **overrides})


def _sha_in_container(container, path):
    code, out = container.exec_run(["sha256sum", path])
    assert code == 0, out
    return out.decode().split()[0]


def test_deploy_starts_the_node_with_the_model(deployment):
    from sim2real.contracts.manifest import sha256_file
    from sim2real.deploy.deploy import deploy

    d = deployment
    result = deploy(_config(d))  # DOCKER_HOST=unix:///var/run/docker.sock
    container = d["client"].containers.get(d["name"])
    assert container.status == "running" and result["id"] == container.short_id
    host_config = container.attrs["HostConfig"]
    assert host_config["NetworkMode"] == "host" and host_config["IpcMode"] == "host"
    assert host_config["RestartPolicy"]["Name"] == "unless-stopped"
    assert container.attrs["Config"]["User"] == "10001:10001"
    sha = sha256_file(d["model"])
    assert container.labels["org.sim2real.model.sha256"] == sha == result["model_sha256"]
    assert result["model"] == f"/models/{sha[:16]}/model.int8.onnx"
    assert _sha_in_container(container, result["model"]) == sha
    logs = container.logs().decode(errors="replace")
    assert "Traceback" not in logs, logs


def test_redeploy_replaces_the_node_and_a_broken_one_rolls_back(deployment):
    from sim2real.deploy.deploy import deploy

    d = deployment
    first = deploy(_config(d))
    second = deploy(_config(d, restart="always"))
    client = d["client"]
    assert second["id"] != first["id"]
    assert [c.short_id for c in client.containers.list(all=True, filters={"name": d["name"]})] == [second["id"]]
    assert client.containers.get(d["name"]).attrs["HostConfig"]["RestartPolicy"]["Name"] == "always"
    # A bad flag is refused before anything on the robot changes.
    with pytest.raises(ValueError, match="unrecognized --no-such-flag"):
        deploy(_config(d, node_args=["--no-such-flag"]))
    assert client.containers.get(d["name"]).short_id == second["id"]
    # A node that passes the checks but cannot start (its params file is not on the robot):
    # deploy fails, and the previous node runs again.
    with pytest.raises(RuntimeError, match="exited"):
        deploy(_config(d, node_args=["--ros-args", "--params-file", "/nonexistent/node.yaml"]))
    current = client.containers.get(d["name"])
    assert current.short_id == second["id"]
    for _ in range(20):
        current.reload()
        if current.status == "running":
            break
        time.sleep(0.25)
    assert current.status == "running"
    assert len(client.containers.list(all=True, filters={"name": d["name"]})) == 1


def test_deploy_loads_a_saved_image_instead_of_pulling(deployment):
    from sim2real.deploy.cli import main

    d = deployment
    tag = f"s2r-deploy-load-{os.getpid()}:test"
    tarball = d["tmp"] / "runtime.tar"
    assert run(["docker", "tag", d["image"], tag], timeout=60).returncode == 0
    try:
        assert run(["docker", "save", "-o", str(tarball), tag], timeout=600).returncode == 0
        assert run(["docker", "rmi", tag], timeout=60).returncode == 0  # only the tag goes: layers stay
        argv = ["deploy", "--host", SOCKET, "--model", str(d["model"]), "--image", tag, "--load", str(tarball),
                "--name", d["name"], "--volume", d["volume"], "--runtime", "", "--pull", "never", "--wait", "3"]
        for key, value in ROS_ENV.items():
            argv += ["--env", f"{key}={value}"]
        assert main(argv) == 0
        assert d["client"].images.get(tag)
        container = d["client"].containers.get(d["name"])
        assert container.status == "running" and container.labels["org.sim2real.image"] == tag
    finally:
        run(["docker", "rmi", "-f", tag], timeout=60)


def test_pull_never_without_the_image_is_one_clear_error(deployment, capsys):
    from sim2real.deploy.cli import main

    d = deployment
    argv = ["deploy", "--host", SOCKET, "--model", str(d["model"]), "--image", "sim2real/not-built:nope",
            "--name", d["name"], "--volume", d["volume"], "--runtime", "", "--pull", "never"]
    assert main(argv) == 2
    assert "--load" in capsys.readouterr().err
