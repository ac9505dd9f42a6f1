"""The team setup on one machine: PostgreSQL, an S3 API server, an MLflow tracking server
(PostgreSQL backend store, artifacts in S3) and a Prefect server (on PostgreSQL), all on
127.0.0.1. Tests start it to prove the team mode with real servers; `make team-up` starts it
to try the mode by hand and writes the variables a clone needs to `.team/env`.

    python -m devtools.team up      # prints the environment for clients, keeps running
    python -m devtools.team down    # stops what `up` started (by PID)

The S3 server is moto's server mode (PyPI, pure Python, no account, no disk layout of its own
to manage), chosen over MinIO because MinIO ships no package on the registries reachable here.

Every server asks who you are: PostgreSQL by password (scram-sha-256), S3 by an IAM access key
(moto checks signatures once the stack made its user), MLflow by basic auth (its basic-auth
app), Prefect by its API auth string. Each credential is generated per stack and given by
environment variable or by a file created 0600, never on a command line (any local user reads
those with ps), in params, tags or artifacts; `.team/env` (0600) holds what clients need.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from devtools.sandbox import Server, free_port

BUCKET = "klue-nli"
PG_USER = "klue"
REGION = "us-east-1"
MLFLOW_USER = "klue"  # the MLflow admin the stack creates; the team adds its own users
PREFECT_USER = "klue"
# moto answers this many AWS calls unsigned, then checks every signature: the stack's own
# four (its IAM user, its access key, the user's policy, the bucket)
S3_SETUP_CALLS = 4
S3_POLICY = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
)


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for version in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (version / name).exists():
            return str(version / name)
    raise RuntimeError(f"PostgreSQL's {name} not found: install PostgreSQL (make postgres)")


def _as_postgres_user(args: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` system user."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@dataclass
class TeamStack:
    root: Path
    password: str = field(default_factory=lambda: secrets.token_hex(12))
    mlflow_password: str = field(default_factory=lambda: secrets.token_hex(12))
    prefect_password: str = field(default_factory=lambda: secrets.token_hex(12))
    flask_key: str = field(default_factory=lambda: secrets.token_hex(16))  # MLflow's CSRF
    access_key: str = ""  # moto's, once the stack made its IAM user
    secret_key: str = ""
    servers: dict[str, Server] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    pg_data: Path | None = None

    # --- what clients and servers are given ------------------------------------------------
    def pg_url(self, db: str, driver: str = "postgresql") -> str:
        return f"{driver}://{PG_USER}:{self.password}@127.0.0.1:{self.ports['pg']}/{db}"

    @property
    def s3_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def aws_env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": REGION,
            "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint,
            "AWS_ENDPOINT_URL": self.s3_endpoint,  # boto3 and s3fs (the DVC remote) read it
        }

    def client_env(self) -> dict[str, str]:
        """What a clone (a developer machine, a worker) needs: URLs and S3 credentials."""
        env = {
            **self.aws_env(),
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{self.ports['mlflow']}",
            "MLFLOW_TRACKING_USERNAME": MLFLOW_USER,
            "MLFLOW_TRACKING_PASSWORD": self.mlflow_password,
            # artifacts through the server, not from presigned S3 URLs: moto, the S3 stand-in,
            # fails a presigned GET once it checks signatures (real S3 does not)
            "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD": "false",
        }
        if "prefect" in self.ports:
            env["PREFECT_API_URL"] = f"http://127.0.0.1:{self.ports['prefect']}/api"
            env["PREFECT_API_AUTH_STRING"] = f"{PREFECT_USER}:{self.prefect_password}"
        return env

    @property
    def dvc_remote(self) -> str:
        return f"s3://{BUCKET}/dvc"

    def secrets(self) -> list[str]:
        return [
            self.password,
            self.secret_key,
            self.mlflow_password,
            self.prefect_password,
            self.flask_key,
        ]

    # --- starting and stopping ---------------------------------------------------------------
    def start(self, base_env: dict, prefect: bool = True) -> TeamStack:
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self._postgres(base_env)
            self._s3(base_env)
            self._mlflow(base_env)
            if prefect:
                self._prefect(base_env)
        except BaseException:
            self.stop()
            raise
        return self

    def start_postgres(self, base_env: dict) -> TeamStack:
        """PostgreSQL alone (the feedback store's tests need no other server)."""
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self._postgres(base_env)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for server in reversed(list(self.servers.values())):  # clients of PostgreSQL first
            server.stop()
        self.servers.clear()
        if self.pg_data is not None:
            shutil.rmtree(self.pg_data, ignore_errors=True)
            shutil.rmtree(self.pg_data.with_suffix(".pw"), ignore_errors=True)

    def _postgres(self, env: dict) -> None:
        # Its own folder outside `root`: the postgres user must own it, and a pytest tmp_path
        # (mode 700, owned by root) is not reachable for that user.
        data = Path(tempfile.mkdtemp(prefix="klue-nli-pg-"))
        pwfile = data.with_suffix(".pw")
        _write_private(pwfile, self.password)
        if os.geteuid() == 0:
            shutil.chown(data, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        initdb = [_pg_bin("initdb"), "-D", str(data / "db"), "-U", PG_USER, "-A", "scram-sha-256"]
        subprocess.run(
            _as_postgres_user([*initdb, f"--pwfile={pwfile}", "-E", "UTF8", "--no-locale"]),
            check=True,
            capture_output=True,
            env=env,
        )
        pwfile.unlink()
        port = self.ports["pg"] = free_port()
        args = [_pg_bin("postgres"), "-D", str(data / "db"), "-p", str(port)]
        args += ["-h", "127.0.0.1", "-k", str(data)]  # loopback only; socket in its own folder
        server = Server(
            _as_postgres_user(args), f"tcp://127.0.0.1:{port}", self.root / "pg.log", data, env
        )
        self.pg_data = data
        self.servers["pg"] = server
        server.wait_ready(60)
        import psycopg2  # the team extra

        for _ in range(60):  # TCP is up a moment before it accepts logins
            try:
                conn = psycopg2.connect(self.pg_url("postgres"))
                break
            except psycopg2.OperationalError:
                time.sleep(0.5)
        conn.autocommit = True
        with conn.cursor() as cur:
            for db in ("mlflow", "prefect", "feedback"):
                cur.execute(f"CREATE DATABASE {db}")
        conn.close()

    def _s3(self, env: dict) -> None:
        port = self.ports["s3"] = free_port()
        args = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
        server = Server(
            args,
            f"http://127.0.0.1:{port}/moto-api/",
            self.root / "s3.log",
            self.root,
            {**env, "INITIAL_NO_AUTH_ACTION_COUNT": str(S3_SETUP_CALLS)},
        )
        self.servers["s3"] = server
        server.wait_ready(60)
        import boto3

        unsigned = {"aws_access_key_id": "setup", "aws_secret_access_key": "setup"}
        where = {"endpoint_url": self.s3_endpoint, "region_name": REGION, **unsigned}
        iam = boto3.client("iam", **where)
        iam.create_user(UserName=BUCKET)
        key = iam.create_access_key(UserName=BUCKET)["AccessKey"]
        self.access_key, self.secret_key = key["AccessKeyId"], key["SecretAccessKey"]
        iam.put_user_policy(UserName=BUCKET, PolicyName="s3", PolicyDocument=S3_POLICY)
        boto3.client("s3", **where).create_bucket(Bucket=BUCKET)  # the last unsigned call

    def _mlflow(self, env: dict) -> None:
        port = self.ports["mlflow"] = free_port()
        config = self.root / "mlflow-auth.ini"
        users = self.root / "mlflow-users.db"
        _write_private(
            config,
            "[mlflow]\n"
            "default_permission = READ\n"
            f"database_uri = sqlite:///{users}\n"
            f"admin_username = {MLFLOW_USER}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n",
        )
        _private_empty(users)
        args = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1"]
        args += ["--port", str(port), "--workers", "1", "--app-name", "basic-auth"]
        args += ["--artifacts-destination", f"s3://{BUCKET}/mlflow"]
        server_env = {
            **env,
            **self.aws_env(),
            # the database's password in the environment, not on the command line
            "MLFLOW_BACKEND_STORE_URI": self.pg_url("mlflow", "postgresql+psycopg2"),
            "MLFLOW_AUTH_CONFIG_PATH": str(config),
            "MLFLOW_AUTH_ADMIN_PASSWORD": self.mlflow_password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": self.flask_key,
        }
        # /health answers without a login: ready means up, not that anyone may use it
        server = Server(
            args, f"http://127.0.0.1:{port}/health", self.root / "mlflow.log", self.root, server_env
        )
        self.servers["mlflow"] = server
        server.wait_ready(180)

    def _prefect(self, env: dict) -> None:
        port = self.ports["prefect"] = free_port()
        server_env = {
            **env,
            "PREFECT_HOME": str(self.root / "prefect-server"),
            "PREFECT_API_DATABASE_CONNECTION_URL": self.pg_url("prefect", "postgresql+asyncpg"),
            "PREFECT_SERVER_API_AUTH_STRING": f"{PREFECT_USER}:{self.prefect_password}",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
        }
        server_env.pop("PREFECT_API_URL", None)
        args = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
        args += ["--port", str(port)]
        server = Server(
            args,
            f"http://127.0.0.1:{port}/api/health",
            self.root / "prefect.log",
            self.root,
            server_env,
        )
        self.servers["prefect"] = server
        server.wait_ready(180)


# --- make team-up / team-down ------------------------------------------------------------

STATE = Path(".team")


def _write_private(path: Path, text: str) -> None:
    """A file holding a secret, readable by its owner only from its creation (never briefly
    world-readable, whatever the umask), and made so again if it existed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def _private_empty(path: Path) -> None:
    """An empty file readable by its owner only, for a server to fill (a SQLite database)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    path.chmod(0o600)


def up(env: dict) -> None:
    stack = TeamStack(STATE.resolve()).start(env)
    lines = [f"export {k}={v}" for k, v in stack.client_env().items()]
    lines.append(f"# DVC remote: dvc remote add -d team {stack.dvc_remote}")
    _write_private(STATE / "env", "\n".join(lines) + "\n")  # it holds the credentials
    pids = {name: s.proc.pid for name, s in stack.servers.items()}
    (STATE / "pids.json").write_text(json.dumps(pids))
    print(f"team servers up: {pids}; for a clone: source {STATE / 'env'}")


def down() -> None:
    pids_file = STATE / "pids.json"
    if not pids_file.exists():
        print("team servers: none started here")
        return
    for name, pid in reversed(list(json.loads(pids_file.read_text()).items())):
        try:
            os.killpg(pid, signal.SIGTERM)
            print(f"stopped {name} (pid {pid})")
        except ProcessLookupError:
            print(f"{name} (pid {pid}) was not running")
    pids_file.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down"])
    args = parser.parse_args()
    if args.command == "up":
        up(dict(os.environ))
    else:
        down()


if __name__ == "__main__":
    main()
