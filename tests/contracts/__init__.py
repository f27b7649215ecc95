"""The processors' API contracts (contracts/*.openapi.yaml) and their check on every fake exchange."""
