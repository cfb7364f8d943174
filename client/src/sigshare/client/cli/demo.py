"""``sigshare demo``: a forum of N firms through a real embedded hub, checked against the truth."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from sigshare.client.console import Console
from sigshare.client.exit_codes import ExitCode
from sigshare.client.forum_demo import DemoConfig, DemoReport, HubMissingError, run_forum_demo
from sigshare.client.synthetic import DEFAULT_REWORD_RATE, FIRM_NAMES, SYNTHETIC_ACCOUNTS


@click.command()
@click.option("--seed", default=7, show_default=True, help="Seed of the synthetic forum.")
@click.option(
    "--firms",
    type=click.IntRange(2, len(FIRM_NAMES)),
    default=3,
    show_default=True,
    help="Number of member firms.",
)
@click.option(
    "--accounts",
    type=int,
    default=None,
    help="Accounts per firm (default 3000, fewer above 4 firms: the synthetic phone numbers "
    f"come from reserved drama ranges, {SYNTHETIC_ACCOUNTS:,} accounts in all).",
)
@click.option(
    "--reword",
    "reword_rate",
    type=click.FloatRange(0.0, 0.5),
    default=DEFAULT_REWORD_RATE,
    show_default=True,
    metavar="RATE",
    help="Share of each shared campaign template's words that every firm but the first edits "
    "(substitutes, inserts, deletes or swaps), each firm its own way.",
)
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the hub database and a coordinator credential in this new directory, to review "
    "the results in the coordinator console (see docs/coordinator-guide.md).",
)
@click.option("--json", "json_output", is_flag=True, help="Print one JSON object.")
def demo(
    *,
    seed: int,
    firms: int,
    accounts: int | None,
    reword_rate: float,
    keep: Path | None,
    json_output: bool,
) -> None:
    """Run synthetic firms' nightly syncs against an embedded hub and check the results.

    Starts a hub on a loopback port with a temporary SQLite database, gives each firm its
    configuration, forum secret and input files, and runs each firm's push, pull and confirm
    through the real client. Every firm but the first words each campaign template its own way
    (--reword). Shows what each firm learns about its own accounts and prompt campaigns, what
    coordinators see, how differently the firms worded the campaigns found, and recall and
    precision against the ground truth.
    Leaves nothing behind unless --keep is given.
    """
    console = Console(json_output=json_output)
    if accounts is None:
        accounts = min(3000, SYNTHETIC_ACCOUNTS * 4 // 5 // firms)
    if not 100 <= accounts <= 5000:
        console.abort("--accounts must be between 100 and 5000", ExitCode.USAGE)
    limit = SYNTHETIC_ACCOUNTS * 4 // 5  # room for the accounts several firms share
    if accounts * firms > limit:
        console.abort(
            f"{firms} firms × {accounts} accounts exceed the {limit:,} the synthetic forum can "
            f"give (at most {limit // firms:,} per firm): lower --accounts",
            ExitCode.USAGE,
        )
    started = time.perf_counter()
    try:
        with console.progress("running the forum", 1):
            report = run_forum_demo(
                DemoConfig(
                    seed=seed,
                    firms=firms,
                    accounts_per_firm=accounts,
                    reword_rate=reword_rate,
                    keep=keep,
                )
            )
    except HubMissingError as error:
        console.abort(str(error), ExitCode.CONFIG)
    except FileExistsError as error:
        console.abort(str(error), ExitCode.USAGE)
    elapsed = time.perf_counter() - started
    if json_output:
        document = report.to_json()
        document["seconds"] = round(elapsed, 2)
        document["kept"] = None if report.kept is None else str(report.kept)
        console.emit_json(document)
        return
    _render(console, report, elapsed)


def _render(console: Console, report: DemoReport, elapsed: float) -> None:
    config = report.config
    console.print(
        f"[bold]sigshare demo[/bold] — an embedded hub on 127.0.0.1:{report.hub_port} and "
        f"{config.firms} firms with {config.accounts_per_firm} accounts each; quorum "
        f"{config.quorum}, forum false-shared rate {config.forum_fpr:g}, MinHash "
        f"{_minhash_profile(report.minhash)}. Each firm pushed keyed sketches, then asked the "
        "hub which of its own values other firms hold."
    )
    console.table(
        "what each firm learns: its own values other firms hold too",
        ["firm / kind", "accepted", "rejected rows", "shared", "shared (truth)", "example"],
        [
            [
                f"{s.firm} / {s.kind}",
                str(s.accepted),
                str(sum(s.rejected.values())),
                str(s.reported_shared),
                str(s.truly_shared),
                f"{s.examples[0][0]} (+{s.examples[0][1]})" if s.examples else "-",
            ]
            for s in report.indicator_scores
        ],
    )
    console.table(
        "what each firm learns: its prompt clusters other firms see too",
        ["firm", "cluster", "campaign", "similarity", "other firms", "prompts", "true template"],
        [
            [
                c.firm,
                c.cluster[:8],
                c.campaign_id[:8],
                f"{c.similarity:.2f}",
                str(c.other_members),
                str(c.prompts),
                "none" if c.true_campaign is None else f"#{c.true_campaign}",
            ]
            for c in report.firm_campaigns
        ],
    )
    _render_rewording(console, report)
    firms = report.overlap_firms
    console.table(
        "coordinators: overlap matrix, email (estimate ± stderr / truth)",
        ["", *firms],
        [
            [
                firms[i],
                *(
                    f"{report.overlap_estimate[i][j]:.0f} ± {report.overlap_stderr[i][j]:.0f} / "
                    f"{report.overlap_truth[i][j]}"
                    for j in range(len(firms))
                ),
            ]
            for i in range(len(firms))
        ],
    )
    console.table(
        f"coordinators: campaigns ({report.shared_indicator_records} shared-indicator records "
        f"from {report.confirmed} confirmed tokens)",
        ["campaign", "firms", "similarity", "prompts"],
        [
            [c.id[:8], " + ".join(c.members), f"{c.similarity:.2f}", str(c.volume)]
            for c in report.coordinator_campaigns
        ],
    )
    console.print(
        f"check against ground truth: indicator recall {report.indicator_recall:.2%}, "
        f"precision {report.indicator_precision:.2%}; campaign recall "
        f"{report.campaign_recall:.2%} ({report.campaign_pairs_found}/"
        f"{report.campaign_pairs_truth} firm-campaign pairs), precision "
        f"{report.campaign_precision:.2%} — {elapsed:.1f} s"
        + (", temporary files removed" if report.kept is None else "")
    )
    if report.kept is not None:
        console.print(
            f"kept the hub in {report.kept}: review it with\n"
            f"  sigshare-hub --db sqlite:///{report.kept}/hub.db web --insecure "
            "--listen 127.0.0.1:8080\n"
            f"and sign in at http://127.0.0.1:8080/ with the credential in "
            f"{report.kept}/coordinator.cred"
        )


def _minhash_profile(minhash: dict[str, Any]) -> str:
    words = f"{minhash['shingle_unit']} {minhash['shingle_size']}-shingles"
    if minhash["drop_stopwords"]:
        words += " without stopwords"
    campaigns = f"campaigns from Jaccard {minhash['threshold']:g}"
    if "min_shared_shingles" in minhash:
        campaigns += f" and {minhash['min_shared_shingles']} shared shingles"
    return f"{words}, {campaigns}"


_WORDINGS_SHOWN = 3


def _render_rewording(console: Console, report: DemoReport) -> None:
    shared = report.shared_campaigns
    console.print(
        "The firms word the shared campaign templates differently: every firm but "
        f"{report.verbatim_firm} edited {report.config.reword_rate:.0%} of each template's words "
        "its own way (substituted, inserted, deleted or swapped)."
    )
    console.table(
        "shared campaigns found although worded differently (wording similarity: Jaccard of "
        "the firms' template words, from the synthetic truth; hub estimate: from the firms' "
        "sketches)",
        ["template", "firms", "wording similarity", "hub estimate", "found by"],
        [
            [
                f"#{c.template}",
                " + ".join(c.firms),
                _span([pair.similarity for pair in c.wording_pairs]),
                _span([h.similarity for h in c.hub_campaigns]),
                f"{len(c.found_by)}/{len(c.firms)} firms",
            ]
            for c in shared
        ],
    )
    if shared:
        example = shared[0]
        shown = min(len(example.firms), _WORDINGS_SHOWN)
        of_its = "" if shown == len(example.firms) else f" of its {len(example.firms)}"
        console.print(
            f"template #{example.template} as {shown}{of_its} firms word it "
            "({slot}: each prompt's own content):"
        )
        for firm, wording in list(example.wordings.items())[:_WORDINGS_SHOWN]:
            console.print(f"  {firm}: {escape(wording)}")


def _span(values: list[float]) -> str:
    """``0.64`` for one value, ``0.64–0.83`` for several, ``-`` for none."""
    if not values:
        return "-"
    low, high = min(values), max(values)
    return f"{low:.2f}" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f}–{high:.2f}"
