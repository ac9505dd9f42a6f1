"""`make screenshots`: the tools' own views of one real run, for the pages that describe them.

In a scratch checkout of the project (devtools/sandbox.py), the training flow runs once
(`klue-nli flow --recipe quick` by default: the whole chain on a small random BERT in a few
minutes), then headless Chromium photographs:

- `dvc dag` of the pipeline, as the command prints it (docs/img/dvc-dag.png);
- the Prefect UI's page of that flow run, its stage tasks, and its report artifact
  (prefect-flow-run.png, prefect-report.png), served by `prefect server start` on the run's
  own database;
- the MLflow UI's registry: the model with its champion alias, and the champion's version
  page with its model card (mlflow-registry.png, mlflow-model-card.png);
- the service's page answering the first dev pair, served by `bentoml serve` with the
  champion the flow exported (nli-page.png).

docs/img/screenshots.json names the run: date, commit, CPU, recipe.

The bench's plot (docs/img/bench.png) is copied from `make bench`'s file by `make figures`.
Needs what `make quick` needs (KLUE_NLI_MIRROR, KCBERT_DIR offline) and a Chromium
(`make browser`). Nothing in the checkout changes but docs/img/.

    python -m devtools.screenshots [--recipe quick]     # from the project folder
"""

from __future__ import annotations

import argparse
import html
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from devtools.sandbox import Server, bentoml_server, free_port, make_project, project_env
from devtools.stamp import run_stamp
from klue_nli.core.io import atomic_write_json

OUT = Path("docs/img")
VIEWPORT = {"width": 1400, "height": 900}
CLIP = {"x": 0, "y": 0, "width": 1400, "height": 580}
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
MODEL = "klue-nli"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="quick", help="the flow's recipe (default: quick)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="klue-nli-screens-") as tmp:
        scratch = Path(tmp)
        env = project_env(
            PREFECT_HOME=str(scratch / "prefect"), BENTOML_HOME=str(scratch / "bentoml")
        )
        env.pop("PREFECT_API_URL", None)
        project = make_project(Path.cwd(), scratch / "project", env)
        print(f"screenshots: the training flow, recipe {args.recipe} (in {project})", flush=True)
        started = time.monotonic()
        flow = subprocess.run(
            ["klue-nli", "flow", "--recipe", args.recipe],
            cwd=project, env=env, capture_output=True, text=True, timeout=3600,
        )  # fmt: skip
        flow_s = time.monotonic() - started
        if flow.returncode != 0:
            tail = (flow.stdout + flow.stderr).strip().splitlines()[-1:]
            print(f"screenshots: the flow failed: {tail}", file=sys.stderr)
            return 1
        dag = subprocess.run(
            ["dvc", "dag"], cwd=project, env=env, capture_output=True, text=True, check=True
        ).stdout
        with browser() as chromium:
            shoot_text(chromium, "$ dvc dag\n" + dag, OUT / "dvc-dag.png")
            shoot_prefect(chromium, scratch, project, env)
            shoot_mlflow(chromium, scratch, project, env)
            shoot_page(chromium, scratch, project, env)
    atomic_write_json(
        OUT / "screenshots.json",
        {
            **run_stamp(),
            "recipe": args.recipe,
            "flow_seconds": round(flow_s, 1),
        },
    )
    for name in sorted(OUT.glob("*.png")):
        print(f"screenshots: {name} ({name.stat().st_size / 1e3:.0f} kB)")
    return 0


class browser:
    """Headless Chromium through Playwright: Debian's where installed, else Playwright's."""

    def __enter__(self):
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        self._browser = self._pw.chromium.launch(
            executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS
        )
        return self._browser

    def __exit__(self, *exc) -> None:
        self._browser.close()
        self._pw.stop()


def shoot_text(chromium, text: str, path: Path) -> None:
    page = chromium.new_page(viewport={"width": 900, "height": 200})
    page.set_content(
        "<body style='margin:0;background:#1e1e1e'><pre style='margin:0;padding:16px;"
        "color:#ddd;font:15px/1.35 monospace;display:inline-block'>"
        f"{html.escape(text)}</pre></body>"
    )
    page.locator("pre").screenshot(path=str(path))
    page.close()


def shoot_prefect(chromium, scratch: Path, project: Path, env: dict) -> None:
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    server_env = {**env, "PREFECT_UI_ENABLED": "true", "PREFECT_UI_API_URL": api}
    server = Server(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
         "--port", str(port)],
        f"{api}/health", scratch / "prefect-server.log", project, server_env,
    )  # fmt: skip
    try:
        server.wait_ready(180)
        runs = requests.post(
            f"{api}/flow_runs/filter", json={"sort": "START_TIME_DESC", "limit": 1}, timeout=30
        ).json()
        run_id = runs[0]["id"]
        page = chromium.new_page(viewport=VIEWPORT)
        page.goto(f"http://127.0.0.1:{port}/runs/flow-run/{run_id}")
        page.get_by_text("Task Runs").first.wait_for(timeout=60_000)
        settle(page, 5.0)  # the timeline is a canvas: no text to wait for
        # the run's header, its stage tasks on the timeline and the report artifact's marker
        page.screenshot(path=str(OUT / "prefect-flow-run.png"), clip=CLIP)
        page.get_by_text("Artifacts").first.click()
        page.get_by_text("klue-nli-training-report").first.wait_for(timeout=60_000)
        page.get_by_text("klue-nli-training-report").first.click()
        settle(page)
        page.screenshot(path=str(OUT / "prefect-report.png"), full_page=True)
        page.close()
    finally:
        server.stop()


def shoot_mlflow(chromium, scratch: Path, project: Path, env: dict) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = Server(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{project / 'mlflow.db'}"],
        f"{url}/health", scratch / "mlflow-server.log", project, env,
    )  # fmt: skip
    try:
        server.wait_ready(180)
        version = requests.get(
            f"{url}/api/2.0/mlflow/registered-models/alias",
            params={"name": MODEL, "alias": "champion"},
            timeout=30,
        ).json()["model_version"]["version"]
        page = chromium.new_page(viewport=VIEWPORT)
        page.goto(f"{url}/#/models/{MODEL}")
        page.get_by_text(f"Version {version}").first.wait_for(timeout=60_000)
        close = page.get_by_role("button", name="Close")  # the UI's assistant panel
        if close.count():
            close.first.click()
        settle(page)
        page.screenshot(path=str(OUT / "mlflow-registry.png"))
        page.goto(f"{url}/#/models/{MODEL}/versions/{version}")
        page.get_by_text("model card", exact=False).first.wait_for(timeout=60_000)
        settle(page)
        page.screenshot(path=str(OUT / "mlflow-model-card.png"), full_page=True)
        page.close()
    finally:
        server.stop()


def shoot_page(chromium, scratch: Path, project: Path, env: dict) -> None:
    port = free_port()
    server = bentoml_server(project, port, scratch / "bentoml-serve.log", env)
    dev = json.loads(
        next((project / "data/raw").glob("klue-nli-v1.1_dev.json")).read_text(encoding="utf-8")
    )[0]
    try:
        server.wait_ready(300)
        page = chromium.new_page(viewport={"width": 900, "height": 900})
        page.goto(f"http://127.0.0.1:{port}/")
        page.fill("#premise", dev["premise"])
        page.fill("#hypothesis", dev["hypothesis"])
        page.click("#submit")
        page.locator("#premise-echo", has_text=dev["premise"]).wait_for(timeout=60_000)
        settle(page, 1.0)
        page.screenshot(path=str(OUT / "nli-page.png"), full_page=True)
        page.close()
    finally:
        server.stop()


def settle(page, quiet_s: float = 2.0) -> None:
    """Let a single-page app draw (both UIs poll their APIs: the network is never idle)."""
    page.wait_for_load_state("load")
    time.sleep(quiet_s)


if __name__ == "__main__":
    sys.exit(main())
