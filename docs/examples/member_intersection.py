"""See a real intersection through a running hub: one member's side, with the SDK.

    python docs/examples/member_intersection.py --hub 127.0.0.1:7443 --insecure \
        --credential-file acme.cred --secret-file forum.secret --kind email values.txt

Reads one raw value per line, canonicalises it, builds the keyed Bloom filter with the hub's
published parameters, submits it (idempotent: re-running changes nothing), downloads this
member's resolution vector and prints the values other members hold too. Raw values never leave
this process: the hub receives the filter and returns counts per bit position.

The `sigshare` member CLI wraps the same steps for scheduled use; this script shows them bare.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sigshare.client.hub_client import HubClient, HubConnection
from sigshare.sketch.bloom import KeyedBloomFilter, resolve_tokens
from sigshare.sketch.codec import encode_bloom
from sigshare.sketch.keys import KeyPurpose, load_secret_file
from sigshare.sketch.kinds import canonicalise_batch, get_kind
from sigshare.sketch.prf import KeyedPRF


def main() -> None:
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
        result = hub.submit(
            sketch_format="bloom",
            kind=args.kind,
            key_id=params.key_id,
            params_digest=published.digest,
            declared_count=bloom.count,
            payload=encode_bloom(bloom),
        )
        resolution = hub.download_resolution(args.kind, params.key_id)
    others = resolve_tokens(resolution.counts, params, tokens)
    shared = [(value, int(count)) for value, count in zip(values, others, strict=True) if count]
    print(
        f"submitted {bloom.count} {args.kind} values (submission {result.submission_id}"
        f"{', unchanged' if result.duplicate else ''}; {batch.rejected} rejected); "
        f"{resolution.members} members' filters counted, quorum {resolution.quorum}"
    )
    for value, count in shared:
        print(f"{value}\theld by {count} other member(s)")
    print(f"{len(shared)} of {len(values)} values are shared")


if __name__ == "__main__":
    main()
