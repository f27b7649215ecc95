"""Connectors: erase one person in one system. They know nothing of Kafka or faust."""
