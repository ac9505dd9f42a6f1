"""`make container`: the Bento's OCI image, built with podman (daemonless, from Debian's
packages), run, and checked from outside: `/readyz`, `/api` (the tutorial's fields) and
`/feedback` against the running container, which is then stopped. The figures (build and
start time, image size, which base image) go to benchmarks/container.json, which
docs/serving.md renders.

Where `bentofile.yaml`'s base image cannot be pulled (no registry reachable), a base is built
from Debian's packages instead: `debootstrap --variant=minbase` of the same Debian release,
its Python 3.11 and the `uv` installer the Bento's Dockerfile runs. The Python packages are
resolved once on this machine by pip from the Bento's own `requirements.txt` (its CPU torch
index included) and installed in the image without network, so the build needs no index
the host's pip cannot reach.

Podman runs with runc and cgroupfs and without default ulimits (build/container/containers.conf):
crun refuses cgroup v1 layouts such as this project's CI machines, and podman's default
open-file limit can exceed the hard limit a machine gives.

    python -m devtools.container          # from the project folder, as root
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

import requests
import yaml

from devtools.sandbox import free_port
from devtools.stamp import run_stamp
from klue_nli.core.io import atomic_write_json

BUILD = Path("build/container")
RECORD = Path("benchmarks/container.json")
IMAGE = "localhost/klue-nli"
# the base built from Debian's packages where the bentofile's cannot be pulled
LOCAL_BASE = "localhost/klue-nli-base"
# the installer the Bento's generated Dockerfile runs (`command -v uv || pip install uv`)
UV = "uv==0.13.9"
TOOLS = {"podman": "podman", "runc": "runc", "debootstrap": "debootstrap"}  # command: package
CONTAINERS_CONF = """\
# written by make container (devtools/container.py): runc and cgroupfs work on cgroup v1,
# where crun does not; no default ulimits, which can exceed the machine's hard limit
[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""
# the fields the tutorial's web app answered with (service/answers.py keeps them byte-exact)
SEED_FIELDS = (
    "premise",
    "hypothesis",
    "prediction",
    "entailment_data",
    "entailment_width",
    "contradiction_data",
    "contradiction_width",
    "neutral_data",
    "neutral_width",
)
PAIR = {"premise": "오늘은 비가 많이 온다.", "hypothesis": "날씨가 맑다."}


class Refusal(Exception):
    """What stops the target, in one line."""


def say(line: str) -> None:
    print(f"make container: {line}", flush=True)


def run(args: list[str], log: Path, timeout: float = 1800, env: dict | None = None) -> str:
    """Run a step with its output in `log`; a failure is a Refusal quoting its last line."""
    with log.open("w", encoding="utf-8") as fh:
        proc = subprocess.run(
            args, stdout=fh, stderr=subprocess.STDOUT, text=True, timeout=timeout, env=env
        )
    text = log.read_text(encoding="utf-8", errors="replace")
    if proc.returncode != 0:
        last = [line for line in text.splitlines() if line.strip()][-1:] or ["no output"]
        raise Refusal(f"`{' '.join(args[:3])} ...` failed ({last[0].strip()}); log: {log}")
    return text


def ensure_tools() -> None:
    missing = sorted(pkg for cmd, pkg in TOOLS.items() if shutil.which(cmd) is None)
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise Refusal(f"needs {', '.join(missing)} (Debian: apt-get install {' '.join(missing)})")
    say(f"installing {', '.join(missing)} from Debian's packages")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)


def champion_version(env: dict) -> str:
    """The registry version the exported champion carries (what /api names)."""
    out = subprocess.run(
        ["bentoml", "models", "get", "klue-nli:latest", "-o", "json"],
        capture_output=True,
        text=True,
        env=env,
    )
    if out.returncode != 0:
        raise Refusal("no champion exported to BentoML yet: run 'make demo' or 'make champion'")
    return json.loads(out.stdout)["labels"]["registry_version"]


def champion_bento(env: dict) -> str:
    """A Bento of this checkout with the exported champion; its tag."""
    out = run(["bentoml", "build", "--output", "tag"], BUILD / "bento.log", env=env)
    tag = re.search(r"__tag__:(\S+)", out)
    if not tag:
        raise Refusal(f"bentoml build named no Bento; log: {BUILD / 'bento.log'}")
    return tag.group(1)


def base_image(env: dict) -> tuple[str, bool]:
    """(image, built here): the bentofile's base where it can be had, else one from Debian."""
    named = yaml.safe_load(Path("bentofile.yaml").read_text())["docker"]["base_image"]
    official = named if "/" in named else f"docker.io/library/{named}"
    if subprocess.run(["podman", "image", "exists", official], env=env).returncode == 0:
        return official, False
    pulled = subprocess.run(
        ["podman", "pull", "-q", official], capture_output=True, text=True, env=env, timeout=600
    )
    if pulled.returncode == 0:
        return official, False
    reason = (pulled.stderr.strip().splitlines() or ["no answer"])[-1]
    release = named.rsplit("-", 1)[-1]
    local = f"{LOCAL_BASE}:{release}-python3.11"
    say(f"{official} cannot be pulled ({': '.join(reason.split(': ')[-2:])})")
    if subprocess.run(["podman", "image", "exists", local], env=env).returncode != 0:
        build_base(release, local, env)
    else:
        say(f"using {local}, built earlier from Debian's packages (podman rmi it to rebuild)")
    return local, True


def build_base(release: str, tag: str, env: dict) -> None:
    say(f"building {tag} from Debian's packages (debootstrap {release}, its python3)")
    with tempfile.TemporaryDirectory(dir=BUILD) as tmp:
        rootfs = Path(tmp) / "rootfs"
        run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=python3,ca-certificates",
                release,
                str(rootfs),
            ],
            BUILD / "debootstrap.log",
        )
        # the official image's pip installs system-wide; so may the Bento's (PEP 668's marker off)
        for marker in rootfs.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
            marker.unlink()
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (rootfs / cache).glob("*"):
                if item.is_file():
                    item.unlink()
        install_uv(rootfs / "usr/local/bin")
        archive = Path(tmp) / "rootfs.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(rootfs, arcname=".")
        run(
            [
                "podman",
                "import",
                "--change",
                "ENV LANG=C.UTF-8",
                "--change",
                'CMD ["python3"]',
                str(archive),
                tag,
            ],
            BUILD / "import.log",
            env=env,
        )


def pip_download(*args: str, dest: Path, log: Path) -> None:
    """Wheels for this Python and platform, from the indexes the host's pip reaches (one
    that does not answer is passed over, as pip does)."""
    run(
        [sys.executable, "-m", "pip", "download", "-q", "--retries", "1", "--timeout", "30",
         "--only-binary=:all:", *args, "-d", str(dest)],
        log,
    )  # fmt: skip


def install_uv(bin_dir: Path) -> None:
    """The uv binary from its wheel (fetched by the host's pip): no pip in the base at all."""
    wheels = BUILD / "uv-wheel"
    pip_download("--no-deps", UV, dest=wheels, log=BUILD / "uv-download.log")
    wheel = sorted(wheels.glob("uv-*.whl"))[-1]
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if re.fullmatch(r"uv-[^/]+\.data/scripts/uv", n))
        (bin_dir / "uv").write_bytes(zf.read(name))
    (bin_dir / "uv").chmod(0o755)


def wheels_for(bento: str, env: dict) -> Path:
    """The Bento's packages as wheels the image installs offline (uv's system config)."""
    folder = BUILD / "uv"
    path = subprocess.run(
        ["bentoml", "get", bento, "-o", "path"], capture_output=True, text=True, env=env, check=True
    ).stdout.strip()
    requirements = Path(path) / "env/python/requirements.txt"
    pip_download("-r", str(requirements), dest=folder / "wheels", log=BUILD / "wheels.log")
    (folder / "uv.toml").write_text(
        "# make container: the wheels pip resolved on the host, installed without network\n"
        'offline = true\nfind-links = ["/etc/uv/wheels"]\n',
        encoding="utf-8",
    )
    return folder.resolve()


def image_size(image: str, env: dict) -> int:
    out = subprocess.run(
        ["podman", "image", "inspect", image, "--format", "{{.Size}}"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return int(out.stdout.strip())


def check_running(image: str, version: str, env: dict) -> dict:
    """Start the image on a loopback port, check its routes, stop it (always)."""
    port = free_port()
    name = f"klue-nli-check-{os.getpid()}"
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    run(
        [
            "podman",
            "run",
            "-d",
            "--name",
            name,
            "--network=host",
            "-e",
            "KLUE_NLI_HOST=127.0.0.1",
            image,
            "serve",
            "--port",
            str(port),
        ],
        BUILD / "run.log",
        env=env,
    )
    try:
        ready_s = wait_ready(url, name, env) - started
        answer = requests.post(f"{url}/api", json=PAIR, timeout=60)
        if answer.status_code != 200:
            raise Refusal(f"/api answered {answer.status_code}: {answer.text[:200]}")
        body = answer.json()
        absent = [field for field in SEED_FIELDS if field not in body]
        if absent or body["premise"] != PAIR["premise"]:
            raise Refusal(f"/api's answer lacks the tutorial's fields {absent}: {body}")
        if body.get("model_version") != version:
            raise Refusal(f"/api answers with model {body.get('model_version')}, not {version}")
        correction = {**PAIR, "label": "contradiction", "note": "make container"}
        taken = requests.post(f"{url}/feedback", json=correction, timeout=60)
        if taken.status_code != 200 or "feedback_id" not in taken.json():
            raise Refusal(f"/feedback answered {taken.status_code}: {taken.text[:200]}")
        say(f"{url}: /readyz 200 after {ready_s:.1f} s; /api {body['prediction']}; /feedback 200")
        return {
            "ready_s": round(ready_s, 1),
            "api_prediction": body["prediction"],
            "model_version": version,
            "feedback_status": taken.status_code,
        }
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "10", name], capture_output=True, env=env)
        say(f"stopped and removed {name}")


def wait_ready(url: str, name: str, env: dict, limit: float = 300) -> float:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/readyz", timeout=5).status_code == 200:
                return time.monotonic()
        except requests.ConnectionError:
            pass
        state = subprocess.run(
            ["podman", "inspect", name, "--format", "{{.State.Running}}"],
            capture_output=True,
            text=True,
            env=env,
        ).stdout.strip()
        if state != "true":
            logs = subprocess.run(["podman", "logs", name], capture_output=True, text=True, env=env)
            last = [x for x in (logs.stdout + logs.stderr).splitlines() if x.strip()][-1:]
            raise Refusal(f"the container stopped before it was ready: {last}")
        time.sleep(1)
    raise Refusal(f"{url}/readyz did not answer 200 within {limit:.0f} s")


def main() -> int:
    BUILD.mkdir(parents=True, exist_ok=True)
    conf = BUILD / "containers.conf"
    conf.write_text(CONTAINERS_CONF, encoding="utf-8")
    env = {**os.environ, "CONTAINERS_CONF": str(conf.resolve())}
    began = time.monotonic()
    try:
        ensure_tools()
        say(f"podman with runc, cgroupfs and no default ulimits ({conf})")
        version = champion_version(env)
        bento = champion_bento(env)
        base, built_here = base_image(env)
        probe = subprocess.run(
            ["podman", "run", "--rm", "--network=host", base, "true"],
            capture_output=True,
            text=True,
            env=env,
        )
        if probe.returncode != 0:
            last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
            raise Refusal(f"this machine cannot run containers (podman run: {last})")
        uv = wheels_for(bento, env)
        image = f"{IMAGE}:{bento.split(':', 1)[1]}"
        say(f"building {image} from Bento {bento} on {base}")
        started = time.monotonic()
        args = [
            "bentoml",
            "containerize",
            bento,
            "--backend",
            "podman",
            "-t",
            image,
            "--opt",
            "network=host",
            "--opt",
            f"volume={uv}:/etc/uv:ro",
        ]
        if built_here:
            args += ["--opt", f"from={base}"]
        run(args, BUILD / "containerize.log", env=env)
        build_s = time.monotonic() - started
        size = image_size(image, env)
        say(f"built {image} in {build_s:.0f} s, {size / 1e9:.2f} GB")
        checks = check_running(image, version, env)
    except (Refusal, subprocess.TimeoutExpired) as exc:
        say(str(exc))
        return 1
    atomic_write_json(
        RECORD,
        {
            **run_stamp(),
            "bento": bento,
            "image": image,
            "base_image": base,
            "base_built_from_debian": built_here,
            "build_s": round(build_s, 1),
            "wall_s": round(time.monotonic() - began, 1),
            "image_bytes": size,
            **checks,
        },
    )
    say(f"wrote {RECORD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
