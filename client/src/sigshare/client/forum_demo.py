"""A whole forum in one process: an embedded hub, N firms, their nightly syncs, the truth.

The hub is the real one (``sigshare.hub``: gRPC on a loopback port, an SQLite database in a
temporary directory); each firm is the real member client (configuration, input files, local
state, :class:`~sigshare.client.sync.SyncJob` over the hub SDK) fed with synthetic data whose
overlaps are known. Every firm but the first words each shared campaign template its own way
(:func:`~sigshare.client.synthetic.reword_template`), and the prompt family uses the hub's
recommended MinHash profile, which finds campaigns across such rewordings. Firms push, then pull,
then confirm what they resolved; coordinators read the overlap matrix, shared indicators and
campaigns from the hub; finally every firm's results are scored against the exact ground truth,
and every shared campaign is shown with how differently its firms worded it. Everything lives in
a temporary directory that is removed at the end.

The demo needs the ``sigshare-hub`` distribution next to the client (the member side alone
never does).
"""

from __future__ import annotations

import csv
import hashlib
import json
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import combinations
from pathlib import Path
from typing import Any

from sigshare.client.config import ClientConfig, hub_connection
from sigshare.client.hub_client import HubClient
from sigshare.client.inputs import RejectSink
from sigshare.client.state import LocalState
from sigshare.client.sync import SyncJob
from sigshare.client.synthetic import (
    DEFAULT_REWORD_RATE,
    SyntheticForum,
    account_email,
    account_ip,
    account_phone,
    campaign_template,
    firm_names,
    generate_forum,
    wording_similarity,
)
from sigshare.sketch.cluster import MIN_SHARED_SHINGLES
from sigshare.sketch.keys import ForumSecret, write_secret_file
from sigshare.sketch.kinds import get_kind

KINDS = ("email", "phone", "ip")
_ACCOUNT_VALUE = {"email": account_email, "phone": account_phone, "ip": account_ip}
KEY_ID = "demo"
COORDINATOR = "forum-coordinator"


class HubMissingError(Exception):
    """The demo embeds a hub, and the ``sigshare-hub`` distribution is not installed."""


@dataclass
class DemoConfig:
    seed: int = 7
    firms: int = 3
    accounts_per_firm: int = 3000
    capacity: int = 10_000
    forum_fpr: float = 1e-3
    """Forum-level false-shared rate (each filter gets ``forum_fpr / (max_members − 1)``)."""
    max_members: int = 32
    quorum: int = 2
    min_cluster_volume: int = 5
    reword_rate: float = DEFAULT_REWORD_RATE
    """Share of each campaign template's words every firm but the first edits."""
    keep: Path | None = None
    """Keep the hub database and a coordinator credential here instead of removing everything,
    so coordinators can review the results (``sigshare-hub web``)."""


@dataclass
class IndicatorScore:
    kind: str
    firm: str
    accepted: int
    rejected: dict[str, int]
    reported_shared: int
    truly_shared: int
    true_positives: int
    examples: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class FirmCampaign:
    firm: str
    cluster: str
    campaign_id: str
    similarity: float
    other_members: int
    prompts: int
    true_campaign: int | None


@dataclass
class CoordinatorCampaign:
    id: str
    members: list[str]
    similarity: float
    volume: int


@dataclass
class WordingPair:
    firms: tuple[str, str]
    similarity: float
    """Jaccard similarity of the two firms' wordings' word sets (the synthetic truth)."""


@dataclass
class HubCampaign:
    id: str
    similarity: float
    """The hub's estimated Jaccard similarity of the firms' template cores (word sets without
    stopwords and boilerplate)."""


@dataclass
class SharedCampaign:
    """A campaign two or more firms see, each in its own wording, and who was told about it."""

    template: int
    firms: list[str]
    reworded_by: list[str]
    """The holders whose wording is not the template as written."""
    wording_pairs: list[WordingPair]
    found_by: list[str]
    """The holders whose cluster of this template the hub matched with another firm's."""
    hub_campaigns: list[HubCampaign]
    wordings: dict[str, str]
    """Firm → the template as its prompts word it (``{slot}``: where each prompt's content goes)."""

    @property
    def lowest_wording_similarity(self) -> float:
        return min(pair.similarity for pair in self.wording_pairs)

    def to_json(self) -> dict[str, Any]:
        return {
            "template": self.template,
            "firms": self.firms,
            "reworded_by": self.reworded_by,
            "wording_similarity": [
                {"firms": list(pair.firms), "similarity": pair.similarity}
                for pair in self.wording_pairs
            ],
            "lowest_wording_similarity": self.lowest_wording_similarity,
            "found_by": self.found_by,
            "hub_campaigns": [c.__dict__ for c in self.hub_campaigns],
            "wordings": self.wordings,
        }


@dataclass
class DemoReport:
    config: DemoConfig
    minhash: dict[str, Any] = field(default_factory=dict)
    """The prompt family's parameters as the hub published them."""
    indicator_scores: list[IndicatorScore] = field(default_factory=list)
    overlap_firms: list[str] = field(default_factory=list)
    overlap_estimate: list[list[float]] = field(default_factory=list)
    overlap_stderr: list[list[float]] = field(default_factory=list)
    overlap_truth: list[list[int]] = field(default_factory=list)
    firm_campaigns: list[FirmCampaign] = field(default_factory=list)
    coordinator_campaigns: list[CoordinatorCampaign] = field(default_factory=list)
    verbatim_firm: str = ""
    """The firm that sees every campaign template as written (the others reword them)."""
    shared_campaigns: list[SharedCampaign] = field(default_factory=list)
    shared_indicator_records: int = 0
    campaign_pairs_truth: int = 0
    campaign_pairs_found: int = 0
    confirmed: int = 0
    hub_port: int = 0
    kept: Path | None = None

    @property
    def indicator_recall(self) -> float:
        truth = sum(score.truly_shared for score in self.indicator_scores)
        found = sum(score.true_positives for score in self.indicator_scores)
        return found / truth if truth else 1.0

    @property
    def indicator_precision(self) -> float:
        reported = sum(score.reported_shared for score in self.indicator_scores)
        found = sum(score.true_positives for score in self.indicator_scores)
        return found / reported if reported else 1.0

    @property
    def campaign_recall(self) -> float:
        """Share of (firm, shared campaign) pairs the firm was told about."""
        if not self.campaign_pairs_truth:
            return 1.0
        return self.campaign_pairs_found / self.campaign_pairs_truth

    @property
    def campaign_precision(self) -> float:
        """Share of reported clusters whose prompts are a campaign other firms really see."""
        if not self.firm_campaigns:
            return 1.0
        correct = sum(c.true_campaign is not None for c in self.firm_campaigns)
        return correct / len(self.firm_campaigns)

    def to_json(self) -> dict[str, Any]:
        config = {
            name: str(value) if isinstance(value, Path) else value
            for name, value in self.config.__dict__.items()
        }
        return {
            "config": config,
            "minhash": self.minhash,
            "scores": {
                "indicator_recall": self.indicator_recall,
                "indicator_precision": self.indicator_precision,
                "campaign_recall": self.campaign_recall,
                "campaign_precision": self.campaign_precision,
            },
            "indicators": [
                {
                    "firm": s.firm,
                    "kind": s.kind,
                    "accepted": s.accepted,
                    "rejected": s.rejected,
                    "reported_shared": s.reported_shared,
                    "truly_shared": s.truly_shared,
                    "true_positives": s.true_positives,
                }
                for s in self.indicator_scores
            ],
            "campaigns": [c.__dict__ for c in self.firm_campaigns],
            "rewording": {
                "rate": self.config.reword_rate,
                "verbatim_firm": self.verbatim_firm,
                "shared_campaigns": [c.to_json() for c in self.shared_campaigns],
            },
            "coordinator": {
                "overlap": {
                    "kind": "email",
                    "firms": self.overlap_firms,
                    "estimate": self.overlap_estimate,
                    "stderr": self.overlap_stderr,
                    "truth": self.overlap_truth,
                },
                "shared_indicator_records": self.shared_indicator_records,
                "campaigns": [c.__dict__ for c in self.coordinator_campaigns],
            },
            "confirmed_tokens": self.confirmed,
        }


@dataclass
class _Firm:
    index: int
    name: str
    config: ClientConfig
    inputs: list[Path]


def _hub_modules() -> Any:
    try:
        from sigshare.hub import rpc  # noqa: PLC0415 (optional: only the demo embeds a hub)
    except ImportError as error:
        raise HubMissingError(
            "the demo runs a hub in-process: install the sigshare-hub distribution next to "
            "sigshare-client (`pip install ./hub`)"
        ) from error
    return rpc


@contextmanager
def _embedded_hub(directory: Path, config: DemoConfig, firms: list[str]) -> Iterator[Any]:
    """A migrated SQLite hub with the demo's parameters and principals, serving on loopback;
    the prompt family has the recommended MinHash profile."""
    _hub_modules()
    from sigshare.hub.domain import Role  # noqa: PLC0415
    from sigshare.hub.rpc.app import build_hub  # noqa: PLC0415
    from sigshare.hub.rpc.server import parse_listen  # noqa: PLC0415
    from sigshare.hub.services import parameters, principals  # noqa: PLC0415
    from sigshare.hub.storage import make_engine, migrate, session_scope  # noqa: PLC0415

    engine = make_engine(f"sqlite:///{directory / 'hub.db'}")
    migrate.upgrade(engine)
    now = datetime.now(UTC)
    credentials: dict[str, str] = {}
    with session_scope(engine) as session:
        for kind in KINDS:
            parameters.set_kind_parameters(
                session,
                actor="demo",
                kind=kind,
                key_id=KEY_ID,
                capacity=config.capacity,
                forum_fpr=config.forum_fpr,
                max_members=max(config.max_members, len(firms)),
                quorum=config.quorum,
                now=now,
            )
        minhash = parameters.set_minhash_parameters(
            session,
            actor="demo",
            family="prompt",
            key_id=KEY_ID,
            profile=parameters.RECOMMENDED_MINHASH,
            quorum=config.quorum,
            now=now,
        )
        published = parameters.minhash_public_values(minhash)
        if minhash.core_rules == 2:  # the hub requires shared shingles only under core rules 2
            published["min_shared_shingles"] = MIN_SHARED_SHINGLES
        for name in firms:
            _, credential = principals.add_principal(
                session, actor="demo", name=name, role=Role.MEMBER, now=now
            )
            credentials[name] = credential.token
        _, credential = principals.add_principal(
            session, actor="demo", name=COORDINATOR, role=Role.COORDINATOR, now=now
        )
        credentials[COORDINATOR] = credential.token
    server = build_hub(engine, parse_listen("127.0.0.1:0"), tls=None, insecure=True)
    server.server.start()
    try:
        yield engine, server.port, credentials, published
    finally:
        server.stop(2)
        engine.dispose()


def _write_inputs(directory: Path, forum: SyntheticForum, index: int) -> list[Path]:
    firm = forum.firms[index]
    indicators = directory / "indicators.csv"
    with indicators.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["kind", "value", "category"])
        for kind in KINDS:
            for value in firm.indicators[kind]:
                writer.writerow([kind, value, "distillation"])
    prompts = directory / "prompts.jsonl"
    with prompts.open("w", encoding="utf-8") as handle:
        for text in firm.prompts:
            handle.write(json.dumps({"text": text, "category": "distillation"}) + "\n")
    return [indicators, prompts]


def demo_secret(seed: int) -> ForumSecret:
    """The demo's forum secret, derived from the seed so that a run can be reproduced exactly.

    Only for synthetic data: a real forum secret comes from ``sigshare keygen``.
    """
    return ForumSecret(KEY_ID, hashlib.sha256(f"sigshare demo secret {seed}".encode()).digest())


def _prepare_firms(
    directory: Path,
    forum: SyntheticForum,
    port: int,
    credentials: dict[str, str],
    secret: ForumSecret,
) -> list[_Firm]:
    secret_file = directory / "forum.secret"
    write_secret_file(secret_file, secret)
    firms = []
    for index, firm in enumerate(forum.firms):
        home = directory / firm.name
        home.mkdir(mode=0o700)
        credential_file = home / "credential"
        credential_file.write_text(credentials[firm.name] + "\n")
        credential_file.chmod(0o600)
        config = ClientConfig(
            hub=f"127.0.0.1:{port}",
            credential_file=credential_file,
            secret_file=secret_file,
            state_dir=home / "state",
            insecure=True,
            min_cluster_volume=5,
        )
        firms.append(_Firm(index, firm.name, config, _write_inputs(home, forum, index)))
    return firms


def _job(stack: ExitStack, firm: _Firm, secret: ForumSecret, config: DemoConfig) -> SyncJob:
    client = stack.enter_context(HubClient(hub_connection(firm.config)))
    state = stack.enter_context(LocalState.open(firm.config.state_dir))
    return SyncJob(
        client=client,
        state=state,
        secret=secret,
        min_cluster_volume=config.min_cluster_volume,
    )


@contextmanager
def _workspace(keep: Path | None) -> Iterator[Path]:
    """A temporary directory removed afterwards, or ``keep`` (new or empty) left in place."""
    if keep is None:
        with tempfile.TemporaryDirectory(prefix="sigshare-demo-") as temporary:
            yield Path(temporary)
        return
    if keep.exists() and any(keep.iterdir()):
        raise FileExistsError(f"{keep} is not empty: --keep needs a new or empty directory")
    keep.mkdir(mode=0o700, parents=True, exist_ok=True)
    keep.chmod(0o700)
    yield keep.resolve()


def run_forum_demo(config: DemoConfig) -> DemoReport:
    """Run the whole forum and score it; see the module docstring."""
    from sigshare.sketch.keys import load_secret_file  # noqa: PLC0415

    forum = generate_forum(
        config.seed,
        firm_names=firm_names(config.firms),
        accounts_per_firm=config.accounts_per_firm,
        reword_rate=config.reword_rate,
    )
    names = [firm.name for firm in forum.firms]
    report = DemoReport(config=config)
    with (
        _workspace(config.keep) as directory,
        _embedded_hub(directory, config, names) as (engine, port, credentials, minhash),
        ExitStack() as stack,
    ):
        report.hub_port = port
        report.minhash = minhash
        if config.keep is not None:
            coordinator = directory / "coordinator.cred"
            coordinator.write_text(credentials[COORDINATOR] + "\n")
            coordinator.chmod(0o600)
            report.kept = directory
        firms = _prepare_firms(directory, forum, port, credentials, demo_secret(config.seed))
        secret = load_secret_file(directory / "forum.secret")
        jobs = [_job(stack, firm, secret, config) for firm in firms]
        rejects: dict[str, Counter[str]] = {}
        for firm, job in zip(firms, jobs, strict=True):  # night 1: every firm pushes
            with RejectSink(firm.config.rejects_path) as sink:
                indicator_files, prompt_files = firm.inputs[:1], firm.inputs[1:]
                pushed = job.push(indicator_files, prompt_files, rejects=sink)
            rejects[firm.name] = pushed.rejects
        for job in jobs:  # then every firm pulls what the others' filters say
            job.pull()
        for job in jobs:  # and confirms the tokens of what it resolved
            confirmed = job.confirm(job.state.resolved())
            report.confirmed += sum(result.accepted for result in confirmed.values())
        _score_indicators(report, forum, firms, jobs, rejects)
        _score_campaigns(report, forum, firms, jobs)
        _coordinator_view(report, engine, forum)
        _describe_rewording(report, forum)
    return report


def _truth(forum: SyntheticForum, firm: int, kind: str) -> set[str]:
    canonicalise = get_kind(kind).canonicalise
    return {
        canonicalise(_ACCOUNT_VALUE[kind](account))
        for account, holders in forum.account_holders.items()
        if firm in holders and len(holders) >= 2
    }


def _score_indicators(
    report: DemoReport,
    forum: SyntheticForum,
    firms: list[_Firm],
    jobs: list[SyncJob],
    rejects: dict[str, Counter[str]],
) -> None:
    reasons_by_kind = {
        "email": {"bad_syntax"},
        "phone": {"not_a_phone_number"},
        "ip": {"bad_address"},
    }
    for firm, job in zip(firms, jobs, strict=True):
        for kind in KINDS:
            resolved = job.state.resolved(kind)
            reported = {item.canonical for item in resolved}
            truth = _truth(forum, firm.index, kind)
            canonicals, _ = job.state.indicator_tokens(kind)
            report.indicator_scores.append(
                IndicatorScore(
                    kind=kind,
                    firm=firm.name,
                    accepted=len(canonicals),
                    rejected={
                        reason: count
                        for reason, count in rejects[firm.name].items()
                        if reason in reasons_by_kind[kind]
                    },
                    reported_shared=len(reported),
                    truly_shared=len(truth),
                    true_positives=len(reported & truth),
                    examples=[(item.value, item.others) for item in resolved[:2]],
                )
            )


def _score_campaigns(
    report: DemoReport, forum: SyntheticForum, firms: list[_Firm], jobs: list[SyncJob]
) -> None:
    truth_pairs = {
        (firm, campaign)
        for campaign, holders in forum.campaign_firms.items()
        if len(holders) >= 2
        for firm in holders
    }
    found_pairs = set()
    for firm, job in zip(firms, jobs, strict=True):
        campaign_of = dict(
            zip(
                forum.firms[firm.index].prompts,
                forum.firms[firm.index].prompt_campaign,
                strict=True,
            )
        )
        for match in job.state.campaign_matches():
            votes = Counter(campaign_of.get(text, -1) for text in match.prompts)
            label, _ = votes.most_common(1)[0] if votes else (-1, 0)
            true_campaign = label if (firm.index, label) in truth_pairs else None
            if true_campaign is not None:
                found_pairs.add((firm.index, label))
            report.firm_campaigns.append(
                FirmCampaign(
                    firm=firm.name,
                    cluster=match.cluster_id,
                    campaign_id=match.campaign_id,
                    similarity=round(match.similarity, 3),
                    other_members=match.other_members,
                    prompts=len(match.prompts),
                    true_campaign=true_campaign,
                )
            )
    report.campaign_pairs_truth = len(truth_pairs)
    report.campaign_pairs_found = len(found_pairs & truth_pairs)


def _coordinator_view(report: DemoReport, engine: Any, forum: SyntheticForum) -> None:
    """What forum coordinators see, read through the hub's review services."""
    from sigshare.hub.domain import RecordType  # noqa: PLC0415
    from sigshare.hub.listing import MAX_PAGE_SIZE, RecordQuery  # noqa: PLC0415
    from sigshare.hub.services import coordinator_views, reviews  # noqa: PLC0415
    from sigshare.hub.storage import session_scope  # noqa: PLC0415

    now = datetime.now(UTC)
    with session_scope(engine) as session:
        matrix = coordinator_views.overlap_matrix(session, "email", now)
        count = reviews.indicators(session, RecordQuery(RecordType.INDICATOR, size=1)).total
        oldest_first = RecordQuery(RecordType.CAMPAIGN, descending=False, size=MAX_PAGE_SIZE)
        campaigns = reviews.campaigns(session, oldest_first, now).items
    report.overlap_firms = matrix.members
    report.overlap_estimate = [[round(v, 1) for v in row] for row in matrix.estimate.tolist()]
    report.overlap_stderr = [[round(v, 1) for v in row] for row in matrix.stderr.tolist()]
    index = {firm.name: i for i, firm in enumerate(forum.firms)}
    sets = {
        name: {a for a, holders in forum.account_holders.items() if index[name] in holders}
        for name in matrix.members
    }
    report.overlap_truth = [
        [len(sets[a] & sets[b]) for b in matrix.members] for a in matrix.members
    ]
    report.shared_indicator_records = count
    report.coordinator_campaigns = [
        CoordinatorCampaign(
            id=c.id, members=list(c.members), similarity=round(c.similarity, 3), volume=c.volume
        )
        for c in campaigns
    ]


def _describe_rewording(report: DemoReport, forum: SyntheticForum) -> None:
    """Every campaign several firms see: how differently they worded it (from the synthetic
    truth) and which of them the hub told about it."""
    names = [firm.name for firm in forum.firms]
    report.verbatim_firm = names[0]
    hub_similarity = {c.id: c.similarity for c in report.coordinator_campaigns}
    for template, holders in sorted(forum.campaign_firms.items()):
        if len(holders) < 2:
            continue
        wordings = forum.campaign_wordings[template]
        firms = sorted(holders)
        matches = [c for c in report.firm_campaigns if c.true_campaign == template]
        ids = sorted({c.campaign_id for c in matches})
        report.shared_campaigns.append(
            SharedCampaign(
                template=template,
                firms=[names[firm] for firm in firms],
                reworded_by=[
                    names[firm] for firm in firms if wordings[firm] != campaign_template(template)
                ],
                wording_pairs=[
                    WordingPair(
                        firms=(names[a], names[b]),
                        similarity=round(wording_similarity(wordings[a], wordings[b]), 3),
                    )
                    for a, b in combinations(firms, 2)
                ],
                found_by=sorted({c.firm for c in matches}, key=names.index),
                hub_campaigns=[
                    HubCampaign(id=i, similarity=hub_similarity[i])
                    for i in ids
                    if i in hub_similarity
                ],
                wordings={names[firm]: wordings[firm] for firm in firms},
            )
        )
