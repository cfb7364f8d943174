"""Click options shared by ``sigshare`` commands, so every command spells them alike."""

from __future__ import annotations

from pathlib import Path

import click

from sigshare.client.config import CONFIG_ENV

config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),  # load_config reports a bad file (exit 3), not click
    metavar="FILE",
    default=None,
    envvar=CONFIG_ENV,
    show_envvar=True,
    help="Configuration file (default: $XDG_CONFIG_HOME/sigshare/config.toml, "
    "i.e. ~/.config/sigshare/config.toml).",
)
"""``--config FILE`` (or ``$SIGSHARE_CONFIG``) as ``config_file: Path | None``; pass it to
:func:`sigshare.client.config.load_config`."""

json_option = click.option(
    "--json", "json_output", is_flag=True, help="Print one JSON object and nothing else."
)
"""``--json`` as ``json_output: bool``; hand it to :class:`sigshare.client.console.Console`."""
