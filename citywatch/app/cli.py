"""The ``citywatch`` command: ``run``, ``demo``, ``simulate``, ``check-config``.

Exit codes: 0 stopped, 1 a component failed, 2 configuration error, 3 a state
store is unusable (missing, emptied or damaged; see ``run --reset-state``),
130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from citywatch import __version__
from citywatch.config import ConfigError
from citywatch.sqlite import StoreUnusable

EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_STATE = 3
EXIT_INTERRUPTED = 130


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # The embedded demo broker logs every probe connection as an error.
    for noisy in ("amqtt", "transitions"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)


def _install_stop(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def cmd_run(args: argparse.Namespace) -> int:
    from citywatch.app.run import ComponentFailed, run_until_stopped
    from citywatch.app.service import COMPONENTS, Service
    from citywatch.app.settings import load_settings
    from citywatch.clock import SystemClock
    from citywatch.sqlite import reset_store

    settings = load_settings(args.config)
    _setup_logging(settings.log_level)
    components = COMPONENTS
    if args.only:
        components = tuple(c.strip() for c in args.only.split(",") if c.strip())
        unknown = set(components) - set(COMPONENTS)
        if unknown:
            raise ConfigError(
                "--only",
                f"unknown component(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(COMPONENTS)}",
            )

    async def main() -> None:
        stop = asyncio.Event()
        _install_stop(stop)
        service = Service(settings, components)
        await run_until_stopped(service, stop, config_path=args.config)

    log = logging.getLogger("citywatch")
    if args.reset_state:
        log.warning("--reset-state: a state store found unusable is moved aside and started afresh")
    reset: set[Path] = set()
    while True:
        try:
            asyncio.run(main())
        except ComponentFailed as exc:
            log.critical("stopping: %s", exc)
            return EXIT_FAILED
        except StoreUnusable as exc:
            # Raised while the stores load, before the collector takes any input: start
            # again once the store is set aside.
            if not args.reset_state or exc.path in reset:
                raise
            reset.add(exc.path)
            moved = reset_store(exc.path, SystemClock().now())
            log.warning(
                "state store %s %s: %s; starting afresh (--reset-state)",
                exc.path,
                exc.problem,
                f"moved aside to {', '.join(p.name for p in moved)}" if moved else "no file",
            )
            continue
        return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from citywatch.app.settings import load_settings

    settings = load_settings(args.config)
    print(
        f"configuration ok: broker {settings.mqtt.broker}, "
        f"InfluxDB {settings.influx.url or '(none: spool only)'}, data {settings.data_dir}"
    )
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from citywatch.simulate import runner

    _setup_logging("info")
    return runner.main(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from citywatch.app.demo import run_demo

    _setup_logging("warning")
    return asyncio.run(run_demo(args))


def cmd_grafana_sync(args: argparse.Namespace) -> int:
    from citywatch.grafana import sync

    return sync.main(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="citywatch",
        description="Real-time telemetry and alerting for digital city management.",
    )
    p.add_argument("--version", action="version", version=f"citywatch {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", "-c", help="YAML file (default: $CITYWATCH_CONFIG)")

    run = sub.add_parser("run", help="run the service")
    with_config(run)
    run.add_argument("--only", help="comma-separated components to run (collector, rules, api)")
    run.add_argument(
        "--reset-state",
        action="store_true",
        help="start afresh a state store that is missing, emptied or damaged, moving its file"
        " aside (NAME.reset-<time>); without it such a store stops the start (exit 3)",
    )
    run.set_defaults(func=cmd_run)

    chk = sub.add_parser("check-config", help="validate the configuration and exit")
    with_config(chk)
    chk.set_defaults(func=cmd_check_config)

    sim = sub.add_parser("simulate", help="publish a simulated fleet to a broker")
    from citywatch.simulate import runner

    runner.add_arguments(sim)
    sim.set_defaults(func=cmd_simulate)

    demo = sub.add_parser("demo", help="broker, simulator and service in one process")
    with_config(demo)
    demo.add_argument("--devices", type=int, default=40)
    demo.add_argument("--speedup", type=float, default=5.0, help="simulated seconds per second")
    demo.add_argument("--duration", type=float, default=None, help="stop after N seconds")
    demo.set_defaults(func=cmd_demo)

    grafana = sub.add_parser("grafana", help="Grafana dashboards").add_subparsers(
        dest="grafana_command", required=True
    )
    gsync = grafana.add_parser("sync", help="push the dashboards to Grafana (GRAFANA_TOKEN)")
    from citywatch.grafana import sync as grafana_sync

    grafana_sync.add_arguments(gsync)
    gsync.set_defaults(func=cmd_grafana_sync)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"citywatch: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except StoreUnusable as exc:
        # One line, no traceback: a supervisor restarting in a loop would not mend it.
        print(f"citywatch: {exc}", file=sys.stderr)
        return EXIT_STATE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def entry() -> None:
    """The process's entry point (the ``citywatch`` script, ``python -m citywatch``)."""
    code = main()
    if code == EXIT_STATE:
        # The start was refused before anything was taken from the broker: leave at once.
        # An MQTT connection of the service's own output, cancelled while it was being made,
        # would otherwise be collected after the event loop closed, and aiomqtt would print
        # a traceback under the one line that names the store.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
