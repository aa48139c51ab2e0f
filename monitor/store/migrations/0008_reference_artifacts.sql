-- Fitted references stored as data (issue 14): a JSON manifest and numpy arrays (.npz,
-- read without pickle), with `sha256` over both. Rows written before this migration keep
-- their pickled `blob` (format 'pickle'); detection refuses them until an operator runs
-- `radwatch reference migrate-pickles`, which converts them and clears the blob.
ALTER TABLE drift_reference_artifacts
    ADD COLUMN format      text NOT NULL DEFAULT 'pickle'
                           CHECK (format IN ('pickle', 'manifest+npz')),
    ADD COLUMN manifest_json bytea,
    ADD COLUMN arrays        bytea,
    ALTER COLUMN blob DROP NOT NULL,
    ADD CONSTRAINT drift_reference_artifacts_parts CHECK (
        (format = 'pickle' AND blob IS NOT NULL)
        OR (format = 'manifest+npz' AND manifest_json IS NOT NULL AND arrays IS NOT NULL
            AND blob IS NULL));
