"""sigshare.hub — the service that intersects members' keyed sketches.

The gRPC service, storage and engine arrive with the hub milestone; the aggregation maths it will
run (count vectors, resolution vectors, overlap estimates, LSH matching) already lives in
:mod:`sigshare.sketch` so members and hub share one implementation.
"""
