-- Label coverage counts a label by accession that arrived before its inference (closes the gap
-- migration 0013 left; counters of migration 0012).
--
-- 0013 stores a label that names its study by accession alone under the placeholder
-- 'accession:' || accession_pseudo and its label counter resolves the study when the label is
-- stored. A label stored before its inference stayed counted under its placeholder: a labelled
-- "study" with no inference, so label coverage (radwatch_label_coverage_ratio) left out the
-- inference that arrived later, and labelled_studies counted the study twice once it also had
-- a label by UID. The performance join never had the gap: it reads label_history, which
-- resolves when read.
--
-- Now, when inferences are stored, the inference counter folds a labelled placeholder of a new
-- inference's (model, accession) into the study radwatch_label_study resolves it to (the
-- study label_history joins it with): the placeholder row is deleted and its labels are added
-- to the study's row. label_coverage_counts is corrected by the study row's state before and
-- after the batch: a study that becomes labelled adds all its inferences (earlier ones, stored
-- without an accession, included), and each folded placeholder, counted as one labelled study
-- with no inference, is taken off labelled_studies (so a study already labelled by UID goes
-- down by one, a newly labelled one stays the same). The common batch, whose accessions have
-- no placeholder, pays one probe of label_coverage_studies' primary key per distinct
-- (model, accession) and writes nothing more. The counter rebuild resolves labels the same
-- way (radwatch_label_study), and this migration folds once the placeholders a database
-- upgraded from 0013-0015 holds already (one scan of label_coverage_studies, under SHARE
-- locks on inferences and labels: ingest waits for it).
--
-- What remains racy (and how it heals): a label by accession and its inference committed at
-- the same time by two workers (the consumer group gives the two topics' partitions to
-- different workers) may each not see the other's uncommitted row; the label is then counted
-- under its placeholder until `monitor.store.counters.rebuild` (radwatch_rebuild_counters)
-- runs. The same until a rebuild when one accession names two studies of a model whose
-- inferences arrive in separate batches, the smaller study second (radwatch_label_study then
-- resolves to a study other than the one already folded into; rare: one accession is one
-- order). The first leaves the label out of coverage, the second counts it for the other
-- study; neither touches the performance join, which resolves when read. The fold deletes
-- the placeholder before it upserts the study, not in one key order with the label counter's
-- upserts: two such batches touching the same study and placeholder at once can deadlock;
-- PostgreSQL aborts one and the worker retries its batch (DeadlockDetected is a transient
-- error to monitor.store.db.with_retry; the batch and its counters are one transaction).

CREATE OR REPLACE FUNCTION radwatch_count_inferences() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ingest_counts AS c (kind, model_name, site, shard, events, newest_received_at)
    SELECT 'inference', model_name, coalesce(site, ''), kafka_partition % 16, count(*),
           max(received_at)
    FROM new_rows GROUP BY 2, 3, 4 ORDER BY 2, 3, 4
    ON CONFLICT (kind, model_name, site, shard) DO UPDATE
    SET events = c.events + excluded.events,
        newest_received_at = greatest(c.newest_received_at, excluded.newest_received_at);

    -- `changes` holds per (model, study) the statement's inferences (n) and the labels moved
    -- in from folded placeholders; `up` returns the row after the upsert, so its state before
    -- is after minus the change (exact even when another worker's label updated it first).
    WITH studies AS (
        SELECT model_name, study_pseudo, count(*) AS n, min(kafka_partition) % 16 AS shard
        FROM new_rows GROUP BY model_name, study_pseudo
    ), accessions AS (
        SELECT DISTINCT model_name, accession_pseudo FROM new_rows
        WHERE accession_pseudo IS NOT NULL
    ), folded AS (
        -- One primary-key probe per accession. A placeholder holds labels only, each one
        -- counted as a labelled study (labels > 0, so `placeholders` below may subtract it).
        DELETE FROM label_coverage_studies s USING accessions a
        WHERE s.model_name = a.model_name AND s.study_pseudo = 'accession:' || a.accession_pseudo
          AND s.labels > 0
        RETURNING s.model_name, s.study_pseudo, a.accession_pseudo, s.labels
    ), moved AS (
        -- The study label_history joins the label with (the statement sees its own rows).
        SELECT model_name,
               radwatch_label_study(model_name, study_pseudo, accession_pseudo) AS study_pseudo,
               sum(labels) AS labels, count(*) AS placeholders
        FROM folded GROUP BY 1, 2
    ), changes AS (
        SELECT model_name, study_pseudo, coalesce(st.n, 0) AS n, coalesce(m.labels, 0) AS labels,
               coalesce(m.placeholders, 0) AS placeholders, coalesce(st.shard, 0) AS shard
        FROM studies st FULL JOIN moved m USING (model_name, study_pseudo)
    ), up AS (
        INSERT INTO label_coverage_studies AS s (model_name, study_pseudo, inferences, labels)
        SELECT model_name, study_pseudo, n, labels FROM changes ORDER BY model_name, study_pseudo
        ON CONFLICT (model_name, study_pseudo) DO UPDATE
        SET inferences = s.inferences + excluded.inferences, labels = s.labels + excluded.labels
        RETURNING s.model_name, s.study_pseudo, s.inferences, s.labels
    ), delta AS (
        SELECT c.model_name, c.shard,
               CASE WHEN up.labels > 0 THEN up.inferences ELSE 0 END
               - CASE WHEN up.labels - c.labels > 0 THEN up.inferences - c.n ELSE 0 END
                   AS inferences,
               (up.labels > 0)::int - (up.labels - c.labels > 0)::int - c.placeholders
                   AS studies
        FROM up JOIN changes c USING (model_name, study_pseudo)
    )
    INSERT INTO label_coverage_counts AS c (model_name, shard, labelled_inferences,
                                            labelled_studies)
    SELECT model_name, min(shard), sum(inferences), sum(studies)
    FROM delta WHERE inferences <> 0 OR studies <> 0
    GROUP BY model_name ORDER BY model_name
    ON CONFLICT (model_name, shard) DO UPDATE
    SET labelled_inferences = c.labelled_inferences + excluded.labelled_inferences,
        labelled_studies = c.labelled_studies + excluded.labelled_studies;

    PERFORM radwatch_observe(array_agg(series), array_agg(model_name), array_agg(received_at),
                             array_agg(shard), array_agg(v))
    FROM (SELECT 'model_latency' AS series, model_name, received_at,
                 (kafka_partition % 16)::smallint AS shard, latency_ms / 1000.0 AS v
          FROM new_rows WHERE latency_ms IS NOT NULL
          UNION ALL
          SELECT 'ingest_delay', model_name, received_at, (kafka_partition % 16)::smallint,
                 greatest(0, extract(epoch FROM received_at - occurred_at))::float8
          FROM new_rows) AS o;
    RETURN NULL;
END;
$$;

-- Placeholders whose accession has an inference now, folded as the trigger does, and the
-- coverage totals recounted from label_coverage_studies. After 0012's recount (labels grouped by
-- their stored study) this gives what grouping each label by radwatch_label_study would: a
-- label by accession is stored under 'accession:' || accession_pseudo (0013's CHECK), so its
-- placeholder row names its accession. One scan of label_coverage_studies, no event table read.
CREATE FUNCTION radwatch_fold_label_placeholders() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE inferences, labels IN SHARE MODE;  -- no trigger moves a counter meanwhile
    WITH resolved AS (
        SELECT model_name, study_pseudo AS placeholder,
               radwatch_label_study(model_name, study_pseudo,
                                    substr(study_pseudo, length('accession:') + 1)) AS study_pseudo
        FROM label_coverage_studies WHERE study_pseudo LIKE 'accession:%'
    ), folded AS (
        DELETE FROM label_coverage_studies s USING resolved r
        WHERE s.model_name = r.model_name AND s.study_pseudo = r.placeholder
          AND r.study_pseudo <> r.placeholder
        RETURNING r.model_name, r.study_pseudo, s.labels
    )
    INSERT INTO label_coverage_studies AS s (model_name, study_pseudo, labels)
    SELECT model_name, study_pseudo, sum(labels) FROM folded GROUP BY 1, 2
    ON CONFLICT (model_name, study_pseudo) DO UPDATE SET labels = s.labels + excluded.labels;
    DELETE FROM label_coverage_counts;
    INSERT INTO label_coverage_counts (model_name, shard, labelled_inferences, labelled_studies)
    SELECT model_name, 0, sum(inferences), count(*)
    FROM label_coverage_studies WHERE labels > 0 GROUP BY model_name;
END;
$$;

-- The rebuild of 0012 (wrapped by 0015) counts labels under their stored study: fold after
-- it, by the same name, so monitor.store.counters.rebuild keeps working unchanged.
ALTER FUNCTION radwatch_rebuild_counters() RENAME TO radwatch_rebuild_counters_0015;

CREATE FUNCTION radwatch_rebuild_counters() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM radwatch_rebuild_counters_0015();
    PERFORM radwatch_fold_label_placeholders();
END;
$$;

-- Placeholders counted before this migration are folded now (the other counters were right).
SELECT radwatch_fold_label_placeholders();
