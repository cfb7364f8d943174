"""gRPC transport: thin servicers over the service layer, auth, errors and the server itself."""
