"""``sigshare-hub params``: show and set the Bloom and MinHash parameters the hub publishes."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import click

from sigshare.client.console import Console
from sigshare.hub.cli import render
from sigshare.hub.cli.context import HubContext, json_option, pass_hub
from sigshare.hub.domain import KindParameters, MinHashParameters, ShingleUnit
from sigshare.hub.services import epochs
from sigshare.hub.services import parameters as service

MIB = 1 << 20
_Command = TypeVar("_Command", bound=Callable[..., Any])


@click.group()
def params() -> None:
    """Show and set per-kind Bloom and per-family MinHash parameters and forum policy."""


def _policy_options(command: _Command) -> _Command:
    """The forum policy options shared by `params set` and `params set-minhash`."""
    for option in reversed(
        [
            click.option(
                "--quorum", type=int, default=None, help="Members needed to share a value."
            ),
            click.option(
                "--retention-days", type=int, default=None, help="Days a submission stays live."
            ),
            click.option(
                "--reveal-members/--no-reveal-members",
                default=None,
                help="Whether members learn which others share their values.",
            ),
        ]
    ):
        command = option(command)
    return command


_DURATION = re.compile(r"(\d+)\s*([smhd]?)")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """``"3600"``, ``"90m"``, ``"1h"``, ``"0"`` → seconds (a click callback)."""
    if value is None:
        return None
    match = _DURATION.fullmatch(value.strip().lower())
    if match is None:
        raise click.BadParameter(f"{value!r} is not a duration such as 3600, 90m, 1h or 0")
    return int(match.group(1)) * _SECONDS[match.group(2)]


@params.command()
@json_option
@pass_hub
def show(hub: HubContext, json_output: bool) -> None:
    """Show every indicator kind's and MinHash family's parameters and policy, and each kind's
    expected false-shared rate with the current members and fills."""
    console = Console(json_output=json_output)
    with hub.session(console) as session:
        kinds, families = service.list_parameters(session)
        rates = {rate.kind: rate for rate in service.false_shared_rates(session, hub.now())}
    if json_output:
        console.emit_json(
            {
                "kinds": [_kind_document(p, rates.get(p.kind)) for p in kinds],
                "minhash_families": [_minhash_document(p) for p in families],
            }
        )
        return
    if kinds:
        _kinds_table(console, kinds)
        _rates_table(console, [rates[p.kind] for p in kinds if p.kind in rates])
        _warn_forum_size(console, rates.values())
    else:
        console.print("no indicator kinds configured: use `sigshare-hub params set KIND …`")
    if families:
        _families_table(console, families)
    else:
        console.print("no MinHash families configured: use `sigshare-hub params set-minhash …`")


@params.command("set")
@click.argument("kind")
@click.option("--key-id", required=True, help="Key epoch of the forum secret members sketch with.")
@click.option("--capacity", type=int, required=True, help="Most items one member may declare.")
@click.option(
    "--fpr",
    type=float,
    required=True,
    help="Forum-level false-shared rate: how often a value no other member holds is reported "
    "as held by others, with --max-members members at capacity.",
)
@click.option(
    "--max-members",
    type=int,
    default=None,
    help="Forum size the rate is kept for; each filter gets FPR/(max-members − 1) "
    "(default: the current value, else 32).",
)
@click.option(
    "--replace-interval",
    default=None,
    metavar="DURATION",
    callback=_duration,
    help="Shortest time between two replacements of a member's filter, e.g. 1h, 30m or 0 "
    "(default: the current value, else 1h).",
)
@_policy_options
@json_option
@pass_hub
def set_kind(
    hub: HubContext,
    *,
    kind: str,
    key_id: str,
    capacity: int,
    fpr: float,
    max_members: int | None,
    replace_interval: int | None,
    quorum: int | None,
    retention_days: int | None,
    reveal_members: bool | None,
    json_output: bool,
) -> None:
    """Publish Bloom parameters for indicator KIND (m and k are derived from --capacity, --fpr
    and --max-members). Options left out keep their current value."""
    console = Console(json_output=json_output)
    with hub.session(console) as session:
        before = service.kind_parameters(session, kind)
        after = service.set_kind_parameters(
            session,
            actor=hub.actor,
            kind=kind,
            key_id=key_id,
            capacity=capacity,
            forum_fpr=fpr,
            max_members=max_members,
            quorum=quorum,
            retention_days=retention_days,
            reveal_members=reveal_members,
            replace_interval_seconds=replace_interval,
            now=hub.now(),
        )
        rates = [r for r in service.false_shared_rates(session, hub.now()) if r.kind == kind]
    _warn_forum_size(console, rates)
    resubmit = service.invalidates_sketches(before, after)
    if resubmit:
        assert before is not None
        console.warn(
            f"{kind} filters change from key_id {before.key_id}, m={before.m}, k={before.k}, "
            f"capacity {before.capacity} to key_id {after.key_id}, m={after.m}, k={after.k}, "
            f"capacity {after.capacity}: members must resubmit"
        )
    if json_output:
        rate = rates[0] if rates else None
        console.emit_json({**_kind_document(after, rate), "members_must_resubmit": resubmit})
    else:
        _kinds_table(console, [after])
        console.print(f"digest {after.digest().hex()}")


@params.command("set-minhash")
@click.argument("family")
@click.option(
    "--key-id",
    default=None,
    help="Key epoch of the forum secret members sketch with (required for a new family).",
)
@click.option(
    "--threshold",
    type=float,
    default=None,
    help=f"Jaccard similarity from which two members' clusters are one campaign "
    f"(recommended {service.RECOMMENDED_MINHASH.threshold:g}).",
)
@click.option(
    "--cluster-threshold",
    type=float,
    default=None,
    help=f"Jaccard similarity from which a member joins its own prompts into one cluster "
    f"(recommended {service.RECOMMENDED_MINHASH.cluster_threshold:g}).",
)
@click.option("--num-perm", type=int, default=None, help="Minima per signature.")
@click.option(
    "--shingle-unit",
    type=click.Choice(["word", "char"]),
    default=None,
    help="Shingle words or characters.",
)
@click.option("--shingle-size", type=int, default=None, help="Units per shingle.")
@click.option(
    "--drop-stopwords/--keep-stopwords",
    default=None,
    help="Whether members drop English function words before shingling.",
)
@click.option(
    "--core-rules",
    type=click.IntRange(1, 2),
    default=None,
    help="How members sketch a cluster: 1 strict-majority core; 2 without the boilerplate "
    "many of the member's clusters share.",
)
@_policy_options
@json_option
@pass_hub
def set_minhash(
    hub: HubContext,
    *,
    family: str,
    key_id: str | None,
    threshold: float | None,
    cluster_threshold: float | None,
    num_perm: int | None,
    shingle_unit: ShingleUnit | None,
    shingle_size: int | None,
    drop_stopwords: bool | None,
    core_rules: int | None,
    quorum: int | None,
    retention_days: int | None,
    reveal_members: bool | None,
    json_output: bool,
) -> None:
    """Publish MinHash parameters for fingerprint FAMILY (the LSH banding is derived from
    --threshold). Options left out keep their current value; a new family starts from the
    recommended profile (`params upgrade-minhash` moves an existing one to it)."""
    console = Console(json_output=json_output)
    with hub.session(console) as session:
        before = service.minhash_parameters(session, family)
        after = service.set_minhash_parameters(
            session,
            actor=hub.actor,
            family=family,
            key_id=key_id,
            threshold=threshold,
            cluster_threshold=cluster_threshold,
            num_perm=num_perm,
            shingle_unit=shingle_unit,
            shingle_size=shingle_size,
            drop_stopwords=drop_stopwords,
            core_rules=core_rules,
            quorum=quorum,
            retention_days=retention_days,
            reveal_members=reveal_members,
            now=hub.now(),
        )
    _report_minhash_change(console, before, after, json_output)


@params.command("epoch")
@click.argument("key_id")
@click.option(
    "--out-of-band",
    is_flag=True,
    help="The new epoch's secret reached every member by hand, not as sealed envelopes.",
)
@json_option
@pass_hub
def epoch(hub: HubContext, *, key_id: str, out_of_band: bool, json_output: bool) -> None:
    """Move every indicator kind and MinHash family to key epoch KEY_ID, keeping all else.

    Run it once the custodian's `sigshare keys rotate --key-id KEY_ID` has sealed the new
    secret to the members. From now on answers count only submissions under KEY_ID; each
    member's next sync resubmits under it with the secret it installed from its envelope.
    """
    console = Console(json_output=json_output)
    with hub.session(console) as session:
        switch = epochs.switch_epoch(
            session, actor=hub.actor, key_id=key_id, out_of_band=out_of_band, now=hub.now()
        )
    if switch.not_fetched:
        console.warn(
            f"{len(switch.not_fetched)} member(s) have not fetched their envelope for "
            f"{key_id} yet ({', '.join(switch.not_fetched)}): their values count in no answer "
            "until their next sync fetches it and resubmits"
        )
    if json_output:
        console.emit_json(
            {
                "key_id": switch.key_id,
                "moved": [
                    {
                        m.subject: m.name,
                        "previous_key_id": m.previous_key_id,
                        "members_before": m.senders,
                        "members_carried_over": m.carried,
                    }
                    for m in switch.moved
                ],
                "unchanged": [{m.subject: m.name} for m in switch.already],
                "sealed": switch.sealed,
                "not_fetched": switch.not_fetched,
                "members_must_resubmit": bool(switch.moved),
            }
        )
        return
    if not switch.moved:
        console.print(f"every kind and family is at key epoch {key_id} already: nothing changed")
        return
    render.table(
        console,
        f"moved to key epoch {key_id}",
        ["what", "name", "from", "members carried over"],
        [
            [m.subject, m.name, m.previous_key_id, f"{m.carried} of {m.senders}"]
            for m in switch.moved
        ],
    )
    console.print(
        "members carried over had sent their sketches under the new epoch ahead and count in "
        "answers from now on; the others resubmit in their next sync. The previous epoch's "
        "submissions count in no answer any more."
    )


@params.command("upgrade-minhash")
@click.argument("family")
@json_option
@pass_hub
def upgrade_minhash(hub: HubContext, *, family: str, json_output: bool) -> None:
    """Move MinHash family FAMILY to the recommended profile (word 1-shingles without stopwords,
    boilerplate-free cores, campaigns from Jaccard 0.25), keeping its key epoch and policy.

    Members resubmit under the new parameters at their next sync; until then the family has no
    campaigns. Campaign ids and review decisions carry over through the members' cluster ids."""
    console = Console(json_output=json_output)
    with hub.session(console) as session:
        before = service.minhash_parameters(session, family)
        if before is None:
            raise click.UsageError(
                f"MinHash family {family!r} does not exist: publish it with `params set-minhash`"
            )
        after = service.set_minhash_parameters(
            session,
            actor=hub.actor,
            family=family,
            profile=service.RECOMMENDED_MINHASH,
            now=hub.now(),
        )
    if service.MinHashProfile.of(before) == service.MinHashProfile.of(after):
        console.print(f"{family} already uses the recommended profile: nothing changed")
    _report_minhash_change(console, before, after, json_output)


def _report_minhash_change(
    console: Console,
    before: MinHashParameters | None,
    after: MinHashParameters,
    json_output: bool,
) -> None:
    resubmit = service.invalidates_sketches(before, after)
    if resubmit:
        assert before is not None
        if before.key_id != after.key_id:
            # A new key epoch: members need the new forum secret before their next run.
            tell = (
                f"the forum's key epoch is now {after.key_id}; put its forum secret in your "
                "configuration before your next `sigshare sync`, which then resubmits your "
                "clusters"
            )
        else:
            tell = (
                f"the forum's {after.family} parameters changed; your next `sigshare sync` "
                "(tonight's run) resubmits your clusters — nothing to do unless you pinned an "
                "old client, which refuses the new digest: upgrade it first"
            )
        console.warn(
            f"{after.family} signatures change from key_id {before.key_id}, P={before.num_perm}, "
            f"{_shingles(before)} to key_id {after.key_id}, P={after.num_perm}, "
            f'{_shingles(after)}: members must resubmit. Tell them: "{tell}." Campaigns '
            "reappear as members resubmit."
        )
    if json_output:
        console.emit_json({**_minhash_document(after), "members_must_resubmit": resubmit})
    else:
        _families_table(console, [after])
        console.print(f"digest {after.digest().hex()}")


def _kind_document(
    parameters: KindParameters, rate: service.FalseSharedRate | None = None
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "kind": parameters.kind,
        **service.kind_public_values(parameters),
        "updated_at": parameters.updated_at.isoformat(),
    }
    if rate is not None:
        document["false_shared_rate"] = {
            "filters": rate.filters,
            "members": rate.members,
            "current": rate.current,
            "at_capacity": rate.at_capacity,
            "over_forum_size": rate.over_forum_size,
        }
    return document


def _warn_forum_size(console: Console, rates: Iterable[service.FalseSharedRate]) -> None:
    for rate in rates:
        if rate.over_forum_size:
            console.warn(forum_size_warning(rate))


def forum_size_warning(rate: service.FalseSharedRate) -> str:
    """What ``params`` and ``member add`` say when a forum outgrows a kind's ``max_members``."""
    compared = "above" if rate.over_published_rate else "still within"
    return (
        f"{rate.kind}: the forum has {rate.members} members but its filters are sized for "
        f"{rate.max_members}: with every filter full, a value no other member holds would be "
        f"reported as shared at a rate of {rate.at_capacity:.3g}, {compared} the published "
        f"{rate.forum_fpr:g}; raise it with `sigshare-hub params set {rate.kind} … "
        f"--max-members {rate.members}` (members then rebuild their filters)"
    )


def _rates_table(console: Console, rates: list[service.FalseSharedRate]) -> None:
    render.table(
        console,
        "false-shared rate (a value no other member holds, reported as shared)",
        ["kind", "filters", "members", "now", "at capacity"],
        [
            [
                r.kind,
                str(r.filters),
                f"{r.members} of {r.max_members}",
                f"{r.current:.3g}",
                f"{r.at_capacity:.3g}",
            ]
            for r in rates
        ],
    )


def _minhash_document(parameters: MinHashParameters) -> dict[str, Any]:
    return {
        "family": parameters.family,
        **service.minhash_public_values(parameters),
        "updated_at": parameters.updated_at.isoformat(),
    }


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def _shingles(parameters: MinHashParameters) -> str:
    stopwords = " without stopwords" if parameters.drop_stopwords else ""
    return f"{parameters.shingle_unit} {parameters.shingle_size}-grams{stopwords}"


def _banding(parameters: MinHashParameters) -> str:
    banding = parameters.banding()
    return f"{banding.bands}×{banding.rows}"


def _kinds_table(console: Console, kinds: list[KindParameters]) -> None:
    render.table(
        console,
        "indicator kinds (Bloom filters)",
        [
            "kind",
            "key_id",
            "capacity",
            "forum FPR",
            "max members",
            "filter FPR",
            "m",
            "k",
            "MiB",
            "quorum",
            "retention days",
            "replace every",
            "reveal",
        ],
        [
            [
                p.kind,
                p.key_id,
                f"{p.capacity:,}",
                f"{p.forum_fpr:g}",
                str(p.max_members),
                f"{p.target_fpr:.3g}",
                f"{p.m:,}",
                str(p.k),
                f"{p.m / 8 / MIB:.2f}",
                str(p.quorum),
                str(p.retention_days),
                f"{p.replace_interval_seconds} s",
                _yes_no(p.reveal_members),
            ]
            for p in kinds
        ],
    )


def _families_table(console: Console, families: list[MinHashParameters]) -> None:
    render.table(
        console,
        "MinHash families",
        [
            "family",
            "key_id",
            "P",
            "shingles",
            "core",
            "θ",
            "cluster θ",
            "bands×rows",
            "quorum",
            "retention days",
            "reveal",
        ],
        [
            [
                p.family,
                p.key_id,
                str(p.num_perm),
                _shingles(p),
                "majority − boilerplate" if p.core_rules == 2 else "majority",
                f"{p.threshold:g}",
                f"{p.member_threshold:g}",
                _banding(p),
                str(p.quorum),
                str(p.retention_days),
                _yes_no(p.reveal_members),
            ]
            for p in families
        ],
    )
