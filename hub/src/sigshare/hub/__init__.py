"""sigshare.hub — the service that intersects members' keyed sketches.

Layers, each importing only the ones below it: ``rpc`` (gRPC servicers, auth interceptor,
message conversion) and ``cli`` (the ``sigshare-hub`` command) → ``services`` (use cases; the
caller owns the transaction) → ``storage`` (SQLAlchemy models, repositories holding all SQL,
Alembic migrations) and ``engine`` (pure computations such as campaigns) → ``domain`` types.
The aggregation maths (count vectors, resolution vectors, overlap estimates, LSH) lives in
:mod:`sigshare.sketch`, shared with members.
"""
