"""Kafka → PostgreSQL: the consumer-group worker (`radwatch collect`), its pre- and post-write
stages (images, embeddings), the idempotent batch write and the ingest metrics it feeds.
"""
