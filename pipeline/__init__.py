"""The erasure pipeline: intake, router, connector runtime, aggregator, ledger and CLI."""
