"""sigshare.client — what a member firm runs: the SDK, the nightly job and the ``sigshare`` CLI."""
