"""Decoded pixels → study vectors: the embedder contract and its encoders, the device they run
on, and image-quality features; what the drift tests read as embeddings and scalars.
"""
