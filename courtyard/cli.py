"""The ``courtyard`` command."""

from __future__ import annotations

import asyncio
import contextlib
import enum
from pathlib import Path
from typing import Annotated

import typer

from courtyard.log import configure_logging

__all__ = ["app", "main"]

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Courtyard: doors, lockers, meters."
)
cloud_app = typer.Typer(no_args_is_help=True, help="The cloud service.")
gateway_app = typer.Typer(no_args_is_help=True, help="The on-site gateway.")
db_app = typer.Typer(no_args_is_help=True, help="The cloud database.")
audit_app = typer.Typer(no_args_is_help=True, help="The audit log.")
keys_app = typer.Typer(no_args_is_help=True, help="Key files.")
sim_app = typer.Typer(no_args_is_help=True, help="Standalone device simulators.")
for sub, name in (
    (cloud_app, "cloud"),
    (gateway_app, "gateway"),
    (db_app, "db"),
    (audit_app, "audit"),
    (keys_app, "keys"),
    (sim_app, "sim"),
):
    app.add_typer(sub, name=name)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML configuration file.", exists=True)
]


def _settings(config: Path | None):  # type: ignore[no-untyped-def]
    from courtyard.config import load_settings

    settings = load_settings(config)
    configure_logging(settings.log_level, settings.log_format)
    return settings


def _cloud_settings(config: Path | None, url: str | None):  # type: ignore[no-untyped-def]
    settings = _settings(config)
    cloud = settings.cloud
    if cloud is not None:
        return cloud if url is None else cloud.model_copy(update={"database_url": url})
    if url is None:
        raise typer.BadParameter("give --config with a [cloud] section, or --url")
    from cloud_sync.service.settings import CloudSettings

    return CloudSettings(database_url=url, key_dir=Path("keys"))


@app.command()
def demo(
    data_dir: Annotated[Path, typer.Option(help="Where databases, keys and accounts go.")] = Path(
        "demo-data"
    ),
    http_port: Annotated[int, typer.Option(help="Port of the web UI and API on 127.0.0.1.")] = 8080,
    mqtt_port: Annotated[int, typer.Option(help="Port of the embedded broker (0: any free).")] = 0,
) -> None:
    """Run a whole community on this machine: broker, cloud, gateway, simulated doors, web UI."""
    from courtyard.demo import run_demo

    configure_logging("info")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_demo(data_dir=data_dir.resolve(), http_port=http_port, mqtt_port=mqtt_port))


@cloud_app.command("run")
def cloud_run(config: ConfigOpt = None) -> None:
    """Serve the cloud API, web UI, MQTT ingest and command dispatch."""
    from courtyard.cloud import run_cloud

    settings = _settings(config)
    if settings.cloud is None:
        raise typer.BadParameter("the configuration has no [cloud] section")
    asyncio.run(run_cloud(settings.cloud))


@gateway_app.command("run")
def gateway_run(config: ConfigOpt = None) -> None:
    """Run the gateway daemon until interrupted."""
    from gateway import Gateway

    settings = _settings(config)
    if settings.gateway is None:
        raise typer.BadParameter("the configuration has no [gateway] section")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(Gateway(settings.gateway).run())


@db_app.command("upgrade")
def db_upgrade(
    config: ConfigOpt = None,
    url: Annotated[str | None, typer.Option(help="Database URL (overrides the config).")] = None,
) -> None:
    """Apply the database migrations up to the newest."""
    from cloud_sync.service.migrate import upgrade_sync

    cloud = _cloud_settings(config, url)
    upgrade_sync(cloud.database_url)
    typer.echo("database is at the newest revision")


@audit_app.command("verify")
def audit_verify(
    config: ConfigOpt = None,
    url: Annotated[str | None, typer.Option(help="Database URL (overrides the config).")] = None,
) -> None:
    """Check the audit hash chain; names the first broken row of each site and exits 1."""
    from courtyard.audit_check import verify_audit

    cloud = _cloud_settings(config, url)
    broken, checked = asyncio.run(verify_audit(cloud.database_url))
    if not broken:
        typer.echo(f"audit chain verifies ({checked} records)")
        return
    for link in broken:
        typer.echo(
            f"BROKEN site={link.site_id} seq={link.seq} row id={link.row_id}: {link.reason}",
            err=True,
        )
    raise typer.Exit(1)


@keys_app.command("init")
def keys_init(
    directory: Annotated[Path, typer.Argument(help="Directory for the cloud's key files.")],
) -> None:
    """Create the cloud's key files (KEK, blind-index key, command-signing key), mode 0600."""
    from cloud_sync.service.keys import CloudKeys

    keys = CloudKeys.load_or_create(directory)
    typer.echo(f"command-signing key id {keys.signing.kid}; public key in {directory}")


@sim_app.command("door")
def sim_door(
    device: Annotated[list[str], typer.Option("--device", "-d", help="Controller id (repeat).")],
    broker: Annotated[str, typer.Option(help="host:port of the site broker.")] = "127.0.0.1:1883",
    prefix: Annotated[str, typer.Option(help="Topic prefix of the site.")] = "site",
) -> None:
    """Simulate IP door controllers (strike, door sensor) on a site broker until interrupted."""
    from devices.door import run_simulators

    configure_logging("info")
    host, _, port = broker.rpartition(":")
    typer.echo(f"simulating door controllers {', '.join(device)} on {broker} under {prefix}/door/")
    with contextlib.suppress(KeyboardInterrupt):
        run_simulators(device, host=host or "127.0.0.1", port=int(port), prefix=prefix)


@sim_app.command("terminal")
def sim_terminal(
    device: Annotated[str, typer.Option("--device", "-d", help="Terminal id.")],
    prefix: Annotated[str, typer.Option(help="Topic prefix of the site.")] = "site",
    host: Annotated[str, typer.Option(help="Host of the site broker.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the site broker.")] = 1883,
) -> None:
    """Simulate a locker terminal: actions from stdin (try `help`), displays printed on arrival."""
    import sys

    from devices.terminal import TerminalProfileError, run_console

    configure_logging("warning")
    try:
        with contextlib.suppress(KeyboardInterrupt):
            run_console(
                device, lines=sys.stdin, echo=typer.echo, host=host, port=port, prefix=prefix
            )
    except TerminalProfileError as exc:
        raise typer.BadParameter(str(exc)) from exc


ListenOpt = Annotated[str, typer.Option(help="host:port to serve the line on (127.0.0.1 only).")]


class ModbusModelOpt(enum.StrEnum):
    """``--model`` of ``sim modbus``: the register map the meters speak."""

    sdm120 = "sdm120"
    sdm630 = "sdm630"
    water = "water"


class ParityOpt(enum.StrEnum):
    """``--parity`` of a simulated line (it only changes the paced character time)."""

    N = "N"
    E = "E"
    O = "O"  # noqa: E741  (the parity letter)


class DiOrderOpt(enum.StrEnum):
    """``--di-order`` of ``sim cjt188``."""

    high_first = "high_first"
    low_first = "low_first"


def _listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    if host not in ("", "127.0.0.1", "localhost"):
        raise typer.BadParameter("simulators listen on 127.0.0.1 only")
    return "127.0.0.1", int(port)


@sim_app.command("dlt645")
def sim_dlt645(
    listen: ListenOpt = "127.0.0.1:0",
    meters: Annotated[int, typer.Option(help="Meters on the line.", min=1, max=250)] = 8,
    prepaid: Annotated[int, typer.Option(help="How many of them are prepaid.", min=0)] = 0,
    baud: Annotated[int, typer.Option(help="Line rate used for pacing.")] = 2400,
    pace: Annotated[bool, typer.Option(help="Release bytes at the line rate (8E1).")] = False,
) -> None:
    """Simulate DL/T 645-2007 electricity meters on one RS-485 line behind socket://."""
    from courtyard.simulate import dlt645_devices, make_dlt645_framer, serve

    host, port = _listen(listen)
    with contextlib.suppress(KeyboardInterrupt):
        serve(
            make_dlt645_framer(),
            dlt645_devices(meters, prepaid),
            host=host,
            port=port,
            baud=baud,
            char_bits=11,
            pace=pace,
            echo=typer.echo,
        )


@sim_app.command("modbus")
def sim_modbus(
    listen: ListenOpt = "127.0.0.1:0",
    meters: Annotated[
        int, typer.Option(help="Meters on the line (unit ids 1..N).", min=1, max=247)
    ] = 4,
    model: Annotated[
        ModbusModelOpt, typer.Option(help="Register map: sdm120, sdm630 or water.")
    ] = ModbusModelOpt.sdm120,
    baud: Annotated[
        int | None,
        typer.Option(help="Line rate used for pacing (default: SDM120 2400, else 9600).", min=300),
    ] = None,
    parity: Annotated[ParityOpt, typer.Option(help="Parity used for pacing (8N1 by default).")] = (
        ParityOpt.N
    ),
    pace: Annotated[bool, typer.Option(help="Release bytes at the line rate.")] = False,
) -> None:
    """Simulate Modbus RTU meters (Eastron SDM120/SDM630 or water) on one line behind socket://."""
    from courtyard.simulate import MODBUS_LINE, make_modbus_framer, modbus_devices, serve

    host, port = _listen(listen)
    devices = modbus_devices(meters, model.value)
    with contextlib.suppress(KeyboardInterrupt):
        serve(
            make_modbus_framer(),
            devices,
            host=host,
            port=port,
            baud=baud if baud is not None else MODBUS_LINE[model.value],
            char_bits=10 if parity is ParityOpt.N else 11,
            pace=pace,
            echo=typer.echo,
            addresses=[str(m.unit_id) for m in devices],
        )


@sim_app.command("cjt188")
def sim_cjt188(
    listen: ListenOpt = "127.0.0.1:0",
    meters: Annotated[int, typer.Option(help="Meters on the line.", min=1, max=247)] = 4,
    di_order: Annotated[
        DiOrderOpt, typer.Option(help="Data identifier byte order the meters expect.")
    ] = DiOrderOpt.high_first,
    baud: Annotated[int, typer.Option(help="Line rate used for pacing.", min=300)] = 2400,
    pace: Annotated[bool, typer.Option(help="Release bytes at the line rate (8E1).")] = False,
) -> None:
    """Simulate CJ/T 188-2004 water meters on one RS-485 line behind socket://."""
    from courtyard.simulate import cjt188_devices, make_cjt188_framer, serve
    from devices.cjt188 import DiOrder

    host, port = _listen(listen)
    order = DiOrder.HIGH_FIRST if di_order is DiOrderOpt.high_first else DiOrder.LOW_FIRST
    devices = cjt188_devices(meters, order)
    with contextlib.suppress(KeyboardInterrupt):
        serve(
            make_cjt188_framer(),
            devices,
            host=host,
            port=port,
            baud=baud,
            char_bits=11,
            pace=pace,
            echo=typer.echo,
            addresses=[m.meter_address.digits for m in devices],
        )


@sim_app.command("lockboard")
def sim_lockboard(
    listen: ListenOpt = "127.0.0.1:0",
    boards: Annotated[int, typer.Option(help="Lock boards on the line.", min=1, max=16)] = 1,
    baud: Annotated[int, typer.Option(help="Line rate used for pacing.")] = 19200,
    pace: Annotated[bool, typer.Option(help="Release bytes at the line rate (8N1).")] = False,
) -> None:
    """Simulate Kerong KR-CU16-style lock control boards on one RS-485 line behind socket://."""
    from courtyard.simulate import lockboard_devices, make_lockboard_framer, serve

    host, port = _listen(listen)
    with contextlib.suppress(KeyboardInterrupt):
        serve(
            make_lockboard_framer(),
            lockboard_devices(boards),
            host=host,
            port=port,
            baud=baud,
            char_bits=10,
            pace=pace,
            echo=typer.echo,
        )


def main() -> None:
    """Entry point of the ``courtyard`` console script."""
    app()
