"""``./run demo``: the whole system on this machine against a bundled upstream.

Starts piw-fake-pypi with the bundled scenario (timestamps rebased to now, so the system
follows it as it would follow PyPI live), then every master service, shows progress until
it is caught up, and keeps running until Ctrl-C, which stops everything it started.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from builders.commandline import command_parser
from piw_services.config import CONFIG_HELP, load_config
from piw_services.fake_pypi.buildreqs import write_build_requirements
from piw_services.fake_pypi.history import write_scenario

BIN = Path(sys.executable).parent
DEMO_DB = "postgresql+psycopg2://postgres@127.0.0.1:5432/piw_demo"


def fresh_database(url: str) -> str:
    """Drop and recreate the demo database, migrated to the current schema."""
    from sqlalchemy.engine import make_url

    from piw_services.db import create_database, make_engine, upgrade

    target = make_url(url)
    admin = make_engine(target.set(database="postgres").render_as_string(hide_password=False))
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')
    admin.dispose()
    create_database(url)
    upgrade(url)
    return url


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("./run demo", __doc__.splitlines()[0], config=CONFIG_HELP)
    parser.add_argument("--port", type=int, default=8700, help="port of the fake upstream")
    parser.add_argument("--synthetic", type=int, default=0, metavar="N",
                        help="also replay N generated history events before the scenario")
    parser.add_argument("--web-port", type=int, default=8080, help="port of the index")
    parser.add_argument("--exit-when-caught-up", action="store_true",
                        help="stop once every upstream event is applied and every build is "
                             "done (for scripts and CI)")
    args = parser.parse_args(argv)

    workdir = Path("var/demo")
    # The scenario is rebased to now on every run, so the demo gets a database of its own,
    # fresh each time; the operator's own database (PIW_DB_URL) is never touched.
    os.environ["PIW_DB_URL"] = fresh_database(os.environ.get("PIW_DEMO_DB_URL", DEMO_DB))
    events_path = workdir / "events.jsonl"
    last = write_scenario(events_path, int(time.time()), args.synthetic)
    www = (workdir / "www").resolve()
    shutil.rmtree(www, ignore_errors=True)  # a fresh database needs a fresh tree
    # pip's build isolation installs these from the upstream the builder builds against
    write_build_requirements(workdir / "packages")
    upstream = f"http://127.0.0.1:{args.port}"
    index = f"http://127.0.0.1:{args.web_port}"
    env = dict(os.environ, PIW_UPSTREAM=upstream, PIW_WWW=str(www),
               PIW_WEB_ADDRESS=f"127.0.0.1:{args.web_port}",
               PIW_POLL_INTERVAL=os.environ.get("PIW_POLL_INTERVAL", "2"))
    # a demo shows its downloads within seconds, not minutes
    for key in ("PIW_STATS_PAGE_INTERVAL", "PIW_STATS_INDEX_INTERVAL"):
        env.setdefault(key, "10")
    config = load_config(args.config)
    env["PIW_DB_URL"] = os.environ["PIW_DB_URL"]
    children: list[subprocess.Popen] = []

    stopping: list[bool] = []

    def stop(*_: Any) -> None:
        if stopping:  # another Ctrl-C while stopping: the children already have their SIGTERM
            return
        stopping.append(True)
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                print(f"[piw] {Path(child.args[0]).name} did not stop in 20s: killed", flush=True)
                child.kill()
        print("[piw] stopped", flush=True)
        sys.exit(0)

    # Each child runs in a process group of its own, so Ctrl-C (SIGINT to the terminal's
    # group) reaches only this process, which stops each child once: piw-master (nameko's
    # runner) given SIGINT and SIGTERM together stops twice, fails, and hangs until killed.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, stop)
    own_group = {"process_group": 0, "stdin": subprocess.DEVNULL}
    log = open(workdir / "services.log", "ab")
    print(f"[piw] upstream: piw-fake-pypi on port {args.port} with {last} events", flush=True)
    children.append(subprocess.Popen(
        [str(BIN / "piw-fake-pypi"), "--events", str(events_path), "--port", str(args.port),
         "--packages", str(workdir / "packages")], env=env, stdout=log, stderr=log, **own_group))
    cmd = [str(BIN / "piw-master")] + (["-c", args.config] if args.config else [])
    print("[piw] starting the master services (logs in var/demo/services.log)", flush=True)
    children.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=log, **own_group))
    tools = write_tools_env(workdir / "env", dict(
        env, PIW_AMQP_URI=config["AMQP_URI"],
        **({"PIW_CONFIG": str(Path(args.config).resolve())} if args.config else {})))
    print("[piw] starting a local builder (log in var/demo/builder.log)", flush=True)
    builder_env = dict(env, PIW_BUILDER_AMQP_URI=config["AMQP_URI"],
                       PIW_BUILDER_INDEX_URL=f"{upstream}/simple/",
                       PIW_BUILDER_WORK_DIR=str((workdir / "builds").resolve()))
    builder_log = open(workdir / "builder.log", "ab")
    children.append(subprocess.Popen([str(BIN / "piw-builder"), "--label", "demo-builder"],
                                     env=builder_env, stdout=builder_log, stderr=builder_log,
                                     **own_group))

    import warnings

    with warnings.catch_warnings():  # eventlet announces its deprecation on import
        warnings.simplefilter("ignore")
        from nameko.standalone.rpc import ClusterRpcProxy

    def check_children() -> None:
        for child in children:
            if child.poll() is not None:
                print(f"[piw] {Path(child.args[0]).name} exited with {child.returncode}; "
                      "see var/demo/services.log", flush=True)
                stop()

    started = time.monotonic()
    print("[piw] waiting for the master services to start", flush=True)
    # asked over RPC only once they consume: a call to a service not there yet fails noisily
    while not services_up(config["AMQP_URI"], PROGRESS_SERVICES):
        check_children()
        time.sleep(1)
    ready = ""
    shown = ""
    with ClusterRpcProxy({"AMQP_URI": config["AMQP_URI"]}, timeout=10) as rpc:
        while True:
            check_children()
            try:
                line, done = progress(rpc.reorderer.status(), rpc.upstream.status(),
                                      rpc.build_dispatch.status(), last)
            except Exception as exc:  # a service busy or restarting: asked again below
                line, done = f"no answer from the services yet ({type(exc).__name__})", False
            if line != shown:  # only what changed: the ready message stays on screen
                shown = line
                print(f"[piw] {line}" + (f"  (index: {index}/simple/)" if ready else ""),
                      flush=True)
            if not ready and done:
                ready = (f"[piw] caught up and built in {time.monotonic() - started:.1f}s. "
                         f"The index is {index}/simple/ (pages: {index}/). Try:\n"
                         f"  python3 -m venv /tmp/try && /tmp/try/bin/pip install "
                         f"--index-url {index}/simple/ zlibby pitemp\n"
                         f"The operators' tools on the demo's database and tree, in another "
                         f"terminal here:\n"
                         f"  . {tools} && piw-audit && piw-monitor --once\n"
                         f"  . {tools} && nameko shell --config "
                         f"{args.config or 'config/master.yaml'}\n"
                         f"  >>> n.rpc.build_dispatch.status()\n"
                         f"Ctrl-C stops everything.")
                print(ready, flush=True)
                if args.exit_when_caught_up:
                    stop()
            time.sleep(2)


#: The settings by which the operators' tools find the demo's broker, database and tree.
TOOL_SETTINGS = ("PIW_AMQP_URI", "PIW_DB_URL", "PIW_WWW", "PIW_UPSTREAM", "PIW_WEB_ADDRESS",
                 "PIW_CONFIG")


def write_tools_env(path: Path, env: dict[str, str]) -> Path:
    """Write a shell file that points the piw-* tools (piw-audit, piw-monitor, piw-remove,
    nameko shell, ...) at the demo: its settings from *env* and this venv's commands first on
    PATH. Returns *path* as the user types it (``. var/demo/env``)."""
    lines = ["# ./run demo's settings for the operators' tools: . var/demo/env, then piw-audit,",
             "# piw-monitor, piw-remove ... (rewritten by each run of the demo)"]
    lines += [f"export {key}={shlex.quote(env[key])}" for key in TOOL_SETTINGS if key in env]
    lines.append(f'export PATH={shlex.quote(str(BIN))}:"$PATH"')
    path.write_text("\n".join(lines) + "\n")
    return path


#: The services whose status the progress line shows.
PROGRESS_SERVICES = ("reorderer", "upstream", "build_dispatch")


def services_up(amqp_uri: str, names: tuple[str, ...]) -> bool:
    """Whether each nameko service in *names* consumes its RPC queue (``rpc-<name>``)."""
    from kombu import Connection

    with Connection(amqp_uri, connect_timeout=5) as conn:
        for name in names:
            try:
                channel = conn.channel()
                _, _, consumers = channel.queue_declare(f"rpc-{name}", passive=True)
                channel.close()
            except conn.channel_errors:  # 404: the queue is not there yet
                return False
            if not consumers:
                return False
    return True


def progress(reorderer: dict[str, Any], upstream: dict[str, Any], dispatch: dict[str, Any],
             last: int) -> tuple[str, bool]:
    """One line of the demo's progress (upstream, the catalog, the builds and, while builds
    wait, what they wait for), and whether every event is applied and every build done."""
    builds = build_counts(dispatch)
    skipped = f"{builds['skipped']} skipped"
    if builds["operator"]:
        skipped += f" ({builds['operator']} by an operator)"
    line = (f"upstream serial {reorderer['last_serial']}/{last}  held {reorderer['held']}  "
            f"packages {reorderer['packages']}  event batches {reorderer['outbox_seq']}  "
            f"malformed rows {reorderer['malformed']}  builds: {builds['built']} built, "
            f"{builds['failed']} failed, {skipped}, {builds['pending']} to do")
    if upstream["last_error"]:
        line += f"  upstream error: {upstream['last_error']}"
    if builds["pending"] and not any(b["state"] == "alive" for b in dispatch["builders"]):
        line += "  (waiting for the builder to say hello: var/demo/builder.log)"
    applied = reorderer["last_serial"] >= last and not reorderer["held"]
    return line, applied and not builds["pending"] and bool(builds["built"])


def build_counts(status: dict[str, Any]) -> dict[str, int]:
    """build_dispatch's target counts, summed over ABIs, as built / failed / skipped (of
    which ``operator``: targets an operator's skip keeps unbuilt) / pending."""
    counts = {"built": 0, "failed": 0, "skipped": 0, "pending": 0}
    for states in status["targets"].values():
        for state, n in states.items():
            counts[state if state in counts else "pending"] += n
    counts["operator"] = sum(status.get("operator_skips", {}).values())
    counts["skipped"] += counts["operator"]
    return counts


if __name__ == "__main__":
    sys.exit(main())
