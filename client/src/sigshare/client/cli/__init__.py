"""The ``sigshare`` command: one module per command group, all output through one console."""

from __future__ import annotations

# First of all: gRPC reads its log settings once, when it is imported (see the module).
from sigshare.client.cli import grpc_logging  # noqa: F401

# isort: split
import logging

import click

from sigshare.client.cli.demo import demo
from sigshare.client.cli.doctor import doctor
from sigshare.client.cli.init import init
from sigshare.client.cli.keys import keygen
from sigshare.client.cli.kinds import kinds
from sigshare.client.cli.member_keys import keys
from sigshare.client.cli.sync import confirm, matches, pull, push, status, sync


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sigshare-client", prog_name="sigshare")
def cli() -> None:
    """sigshare: share keyed sketches of suspicious accounts and prompts, never the raw data."""


cli.add_command(keygen)
cli.add_command(keys)
cli.add_command(kinds)
cli.add_command(demo)
cli.add_command(init)
cli.add_command(doctor)
for command in (push, pull, sync, matches, confirm, status):
    cli.add_command(command)


def main() -> None:
    # Library warnings (retries, for one) reach stderr; --json output on stdout is unaffected.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cli()
