"""Use cases of the hub. Services take a session and never commit: the caller owns the
transaction (``session_scope`` at the edge). Nothing here imports grpc, click or ``*_pb2``."""
