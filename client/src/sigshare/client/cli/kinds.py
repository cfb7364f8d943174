"""``sigshare kinds``: list indicator kinds, or canonicalise values to see what would be shared."""

from __future__ import annotations

import sys

import click

from sigshare.client.console import Console
from sigshare.client.exit_codes import ExitCode
from sigshare.sketch.errors import InvalidValueError, UnknownKindError
from sigshare.sketch.kinds import KIND_TYPES, get_kind


@click.command()
@click.argument("kind", required=False)
@click.argument("values", nargs=-1)
@click.option("--json", "json_output", is_flag=True, help="Print one JSON object.")
def kinds(kind: str | None, values: tuple[str, ...], json_output: bool) -> None:
    """List the indicator kinds, or show the canonical form of VALUES of KIND.

    With KIND and no VALUES, values are read one per line from standard input. Nothing is sent
    anywhere: this only shows how values will be canonicalised before hashing.
    """
    console = Console(json_output=json_output)
    if kind is None:
        rows = [
            [name, str(kind_type.code), kind_type.description]
            for name, kind_type in KIND_TYPES.items()
        ]
        if json_output:
            console.emit_json(
                {"kinds": [{"name": n, "code": int(c), "description": d} for n, c, d in rows]}
            )
        else:
            console.table("indicator kinds", ["kind", "code", "canonical form"], rows)
        return
    try:
        canonicaliser = get_kind(kind)
    except UnknownKindError as error:
        console.abort(str(error), ExitCode.USAGE)
    inputs = list(values) if values else [line.rstrip("\n") for line in sys.stdin]
    results: list[dict[str, str]] = []
    for value in inputs:
        try:
            results.append({"input": value, "canonical": canonicaliser.canonicalise(value)})
        except InvalidValueError as error:
            results.append({"input": value, "rejected": error.reason.value, "detail": error.detail})
    if json_output:
        console.emit_json({"kind": kind, "results": results})
        return
    console.table(
        f"{kind} values",
        ["input", "canonical / rejected"],
        [
            [r["input"], r.get("canonical") or f"rejected: {r['rejected']} ({r['detail']})"]
            for r in results
        ],
    )
