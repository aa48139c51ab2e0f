-- Labels by accession and their provenance (issue 17; DESIGN.md §4, docs/contract/).
--
-- A report from the RIS usually carries the accession number, not the Study Instance UID, so a
-- radwatch.label.v1 event may name its study by `study.accession` alone. Such a label is stored
-- with `study_pseudo = 'accession:' || accession_pseudo` (a pseudonym is 32 hex digits, so the
-- prefix never collides with a study pseudonym) and resolved *when read*: to the study of the
-- model's inference with the same pseudonymised accession (the same HMAC key and kind as the
-- inference path, collectors.pseudonym). Resolving at read time makes the arrival order and
-- concurrent workers irrelevant: a label stored before its inference joins as soon as the
-- inference is stored, with no row rewritten. An accession naming two studies of one model
-- (rare: one accession is one order) resolves to the smaller study pseudonym, deterministically.
--
-- `labeler` ({name, version, fingerprint}) and `evidence` ({finding: {start, end, sha256}}) are
-- the optional provenance of a label derived from report text: offsets and hashes only, never
-- the text (DESIGN.md §5). Kept as jsonb columns: read with the label, never queried inside.

ALTER TABLE labels
    ADD COLUMN accession_pseudo text,
    ADD COLUMN labeler jsonb,
    ADD COLUMN evidence jsonb NOT NULL DEFAULT '{}',
    ADD CONSTRAINT labels_accession_key
        CHECK (study_pseudo NOT LIKE 'accession:%' OR study_pseudo = 'accession:' || accession_pseudo);

CREATE INDEX inferences_accession ON inferences (model_name, accession_pseudo)
    WHERE accession_pseudo IS NOT NULL;
CREATE INDEX labels_accession ON labels (model_name, accession_pseudo)
    WHERE accession_pseudo IS NOT NULL;

-- A stored label's study: its own, or for a label by accession the study of the model's
-- inference with that accession (the placeholder while there is none yet).
CREATE FUNCTION radwatch_label_study(p_model text, p_study text, p_accession text)
RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN p_accession IS NOT NULL AND p_study = 'accession:' || p_accession
                THEN coalesce((SELECT min(i.study_pseudo) FROM inferences i
                               WHERE i.model_name = p_model AND i.accession_pseudo = p_accession),
                              p_study)
                ELSE p_study END
$$;

-- Every reader of labels by study goes through here (monitor.performance.watch reads
-- current_labels; label_corrections come from label_history): a read by accession and a read
-- by UID of the same study supersede each other once the study is known.
CREATE OR REPLACE VIEW label_history AS
SELECT l.event_id, l.model_name, l.study_pseudo, l.labels, l.source, l.occurred_at,
       l.received_at,
       row_number() OVER w AS revision,
       lead(l.event_id) OVER w AS superseded_by
FROM (SELECT event_id, model_name,
             radwatch_label_study(model_name, study_pseudo, accession_pseudo) AS study_pseudo,
             labels, source, occurred_at, received_at
      FROM labels) AS l
WINDOW w AS (PARTITION BY l.model_name, l.study_pseudo
             ORDER BY l.occurred_at, l.received_at, l.event_id);

-- The label counter of migration 0012, with the label's study resolved when it is stored, so
-- label coverage counts a label by accession that arrives after its inference. One arriving
-- before its inference stays counted under its placeholder (the coverage metric undercounts
-- it; the performance join, which reads label_history, does not).
CREATE OR REPLACE FUNCTION radwatch_count_labels() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ingest_counts AS c (kind, model_name, site, shard, events, newest_received_at)
    SELECT 'label', model_name, '', kafka_partition % 16, count(*), max(received_at)
    FROM new_rows GROUP BY 2, 4 ORDER BY 2, 4
    ON CONFLICT (kind, model_name, site, shard) DO UPDATE
    SET events = c.events + excluded.events,
        newest_received_at = greatest(c.newest_received_at, excluded.newest_received_at);

    -- A study is newly labelled when all its labels are this statement's.
    WITH resolved AS (
        SELECT model_name, radwatch_label_study(model_name, study_pseudo, accession_pseudo)
                   AS study_pseudo, kafka_partition
        FROM new_rows
    ), studies AS (
        SELECT model_name, study_pseudo, count(*) AS n, min(kafka_partition) % 16 AS shard
        FROM resolved GROUP BY model_name, study_pseudo
    ), up AS (
        INSERT INTO label_coverage_studies AS s (model_name, study_pseudo, labels)
        SELECT model_name, study_pseudo, n FROM studies ORDER BY model_name, study_pseudo
        ON CONFLICT (model_name, study_pseudo) DO UPDATE SET labels = s.labels + excluded.labels
        RETURNING s.model_name, s.study_pseudo, s.inferences, s.labels
    )
    INSERT INTO label_coverage_counts AS c (model_name, shard, labelled_inferences,
                                            labelled_studies)
    SELECT st.model_name, min(st.shard), sum(up.inferences), count(*)
    FROM up JOIN studies st USING (model_name, study_pseudo)
    WHERE up.labels = st.n GROUP BY st.model_name ORDER BY st.model_name
    ON CONFLICT (model_name, shard) DO UPDATE
    SET labelled_inferences = c.labelled_inferences + excluded.labelled_inferences,
        labelled_studies = c.labelled_studies + excluded.labelled_studies;
    RETURN NULL;
END;
$$;
