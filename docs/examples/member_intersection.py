"""See a real intersection through a running hub: one member's side, with the SDK.

    python docs/examples/member_intersection.py --hub 127.0.0.1:7443 --insecure \
        --credential-file acme.cred --secret-file forum.secret --kind email values.txt

Reads one raw value per line, canonicalises it, builds the keyed Bloom filter with the hub's
published parameters, submits it (idempotent: re-running changes nothing), then asks the hub
about the tokens of its own values and prints those other members hold too. Raw values never
leave this process: the hub receives the filter and the 16-byte tokens, and answers per token
with the number of other members whose own filter holds it (their names too where the forum
reveals members), only for tokens this member's filter holds and within the query budgets.

The `sigshare` member CLI wraps the same steps for scheduled use; this script shows them bare.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sigshare.client.errors import HubClientError
from sigshare.client.hub_client import HubClient, HubConnection
from sigshare.client.hub_types import TokenStatus
from sigshare.sketch.bloom import KeyedBloomFilter
from sigshare.sketch.codec import SketchFormat, encode_bloom
from sigshare.sketch.keys import KeyPurpose, load_secret_file
from sigshare.sketch.kinds import canonicalise_batch, get_kind
from sigshare.sketch.prf import KeyedPRF


def main() -> None:
    try:
        run()
    except HubClientError as error:  # the hub's refusal, written for users
        sys.exit(f"error: {error}")


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("values", type=Path, help="one raw value per line")
    parser.add_argument("--hub", required=True, help="HOST:PORT of the hub")
    parser.add_argument("--credential-file", type=Path, required=True)
    parser.add_argument("--secret-file", type=Path, required=True, help="the forum secret")
    parser.add_argument("--kind", default="email")
    parser.add_argument("--ca-cert", type=Path, help="CA of the hub's TLS certificate")
    parser.add_argument("--insecure", action="store_true", help="plaintext, loopback only")
    args = parser.parse_args()

    secret = load_secret_file(args.secret_file)
    raw = args.values.read_text(encoding="utf-8").splitlines()
    batch = canonicalise_batch(get_kind(args.kind), raw)
    values = sorted(set(batch.values))
    connection = HubConnection(
        target=args.hub,
        credential=args.credential_file.read_text(encoding="ascii").strip(),
        ca_cert=args.ca_cert,
        insecure=args.insecure,
    )
    with HubClient(connection) as hub:
        published = hub.get_parameters().bloom[args.kind]
        params = published.bloom_params()
        prf = KeyedPRF(secret.derive(KeyPurpose.BLOOM_TOKEN, args.kind))
        bloom = KeyedBloomFilter(params, prf)
        tokens = bloom.add(values)
        submitted = hub.submit(
            sketch_format=SketchFormat.BLOOM_V1,
            kind=args.kind,
            key_id=params.key_id,
            params_digest=published.digest,
            declared_count=bloom.count,
            payload=encode_bloom(bloom),
        )
        # The tokens of this member's own values, 16 bytes each, in the order of `values`.
        answers = hub.resolve(args.kind, params.key_id, tokens.tobytes())
    print(
        f"submitted {bloom.count} {args.kind} values (submission {submitted.submission_id}"
        f"{', unchanged' if submitted.duplicate else ''}; {batch.rejected} rejected); "
        f"{answers.members} members' filters, quorum {answers.quorum}"
    )
    shared = 0
    for index, value in enumerate(values):
        count = int(answers.others[index])
        if answers.status[index] == TokenStatus.ANSWERED and count:
            shared += 1
            names = ", ".join(answers.names_of(index))  # empty unless the forum reveals them
            print(f"{value}\theld by {count} other member(s){': ' + names if names else ''}")
    print(f"{shared} of {len(values)} values are shared")
    print(
        f"query budget: {answers.submission_tokens} of {answers.submission_budget} tokens for "
        f"this submission, {answers.day_tokens} of {answers.day_budget} in 24 h"
    )
    if over := answers.count(TokenStatus.OVER_BUDGET):
        frees = answers.budget_frees_at
        print(
            f"{over} values not answered: a query budget is spent"
            f"{'; ask again after ' + frees.isoformat(timespec='minutes') if frees else ''}"
        )
    if not_held := answers.count(TokenStatus.NOT_HELD):
        print(f"{not_held} values not in the hub's copy of this member's filter: not answered")


if __name__ == "__main__":
    main()
