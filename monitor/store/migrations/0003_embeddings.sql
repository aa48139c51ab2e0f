-- Embeddings and image-quality features (issue 4). No PHI: images are known by image_ref,
-- the HMAC pseudonym of their URI; the URI itself is only kept sealed (AES-GCM) for backfill.

-- Every embedder that has produced a stored vector, with what its fingerprint covers.
CREATE TABLE embedders (
    fingerprint     text PRIMARY KEY,           -- SHA-256(weights digest + spec)
    name            text NOT NULL,
    spec            jsonb NOT NULL,
    weights_sha256  text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- One vector per (image, embedder). model_name / event_id name the first event that brought
-- the image (an image seen by two models is embedded once per embedder); join inferences on
-- image_ref for every event that saw it.
CREATE TABLE embeddings (
    image_ref            text NOT NULL,
    embedder_fingerprint text NOT NULL REFERENCES embedders (fingerprint),
    model_name           text NOT NULL,
    event_id             text NOT NULL,
    vector               real[] NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (image_ref, embedder_fingerprint)
);
CREATE INDEX embeddings_model ON embeddings (model_name, embedder_fingerprint, created_at);

CREATE TABLE image_features (
    image_ref   text PRIMARY KEY,
    model_name  text NOT NULL,
    event_id    text NOT NULL,
    features    jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Where to read an image again (for `radwatch embed` backfills). The URI may itself carry
-- identifiers (paths, WADO-RS UIDs), so it is stored only AES-256-GCM-sealed under a key
-- derived (HKDF-SHA256) from the pseudonym key, which never enters the database; the
-- image_ref is the associated data, so a sealed URI cannot be moved to another row.
CREATE TABLE image_locators (
    image_ref   text PRIMARY KEY,
    sealed_uri  bytea NOT NULL,                 -- 12-byte nonce ‖ ciphertext ‖ 16-byte tag
    key_id      text NOT NULL,                  -- which derived key sealed it (rotation)
    created_at  timestamptz NOT NULL DEFAULT now()
);
