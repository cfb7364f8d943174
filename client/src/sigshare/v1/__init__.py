"""Generated protobuf and gRPC stubs of proto/sigshare/v1 (see scripts/gen_protos.py).

Do not edit the ``*_pb2*`` modules: regenerate them. Only the conversion modules of the client
and hub import them.
"""
