-- What a reader did with an AI result (issue 17; DESIGN.md §4, docs/contract/interaction.v1.schema.json).
--
-- One row per radwatch.interaction.v1 event, written idempotently on event_id like labels
-- (monitor.ingest.batch_store). The action and the reader's role come from closed sets (the
-- IHE Radiology AI Results (AIR) notions of a result shown, accepted, overridden or
-- dismissed); nothing names a person. An interaction naming its study by accession alone is
-- stored with the placeholder of migration 0013 (`'accession:' || accession_pseudo`) and
-- resolved when read, by the same function as a label's (radwatch_label_study).
--
-- `viewed` is as sent (NULL when absent): a reader acting on a result saw it, so readers
-- take coalesce(viewed, true); only a dismissal may carry viewed = false (the parser
-- refuses it elsewhere).
CREATE TABLE interactions (
    event_id         text PRIMARY KEY,
    content_hash     text NOT NULL,
    model_name       text NOT NULL,
    model_version    text,
    study_pseudo     text NOT NULL,
    accession_pseudo text,
    action           text NOT NULL
                     CHECK (action IN ('viewed', 'accepted', 'overridden', 'dismissed')),
    viewed           boolean,
    time_to_read_s   double precision CHECK (time_to_read_s BETWEEN 0 AND 86400),
    user_role        text
                     CHECK (user_role IN ('radiologist', 'resident', 'technologist', 'other')),
    occurred_at      timestamptz NOT NULL,
    received_at      timestamptz NOT NULL DEFAULT now(),
    kafka_topic      text NOT NULL,
    kafka_partition  integer NOT NULL,
    kafka_offset     bigint NOT NULL,
    CONSTRAINT interactions_accession_key
        CHECK (study_pseudo NOT LIKE 'accession:%' OR study_pseudo = 'accession:' || accession_pseudo)
);
-- The never-viewed signal probes per inference (model, study) and (model, accession); the
-- 30-day acceptance rate reads a (model, time) range.
CREATE INDEX interactions_study ON interactions (model_name, study_pseudo);
CREATE INDEX interactions_accession ON interactions (model_name, accession_pseudo)
    WHERE accession_pseudo IS NOT NULL;
CREATE INDEX interactions_model_time ON interactions (model_name, occurred_at);

-- Counters (migration 0012's scheme: statement triggers over the rows really inserted, so a
-- replay counts nothing twice; sharded by kafka_partition % 16).
ALTER TABLE ingest_counts DROP CONSTRAINT ingest_counts_kind_check,
    ADD CONSTRAINT ingest_counts_kind_check CHECK (kind IN ('inference', 'label', 'interaction'));

-- By model and action: what /metrics serves as radwatch_interactions_total.
CREATE TABLE interaction_counts (
    model_name text NOT NULL,
    action     text NOT NULL,
    shard      smallint NOT NULL,
    events     bigint NOT NULL,
    PRIMARY KEY (model_name, action, shard)
);

-- Time to read (seconds from the result's presentation to the reader's action, as sent).
INSERT INTO histogram_bounds (series, bounds, neg)
SELECT 'time_to_read', b, ARRAY(SELECT -x FROM unnest(b) x ORDER BY -x)
FROM (VALUES (ARRAY[5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600]::float8[])) AS v (b);

CREATE FUNCTION radwatch_count_interactions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ingest_counts AS c (kind, model_name, site, shard, events, newest_received_at)
    SELECT 'interaction', model_name, '', kafka_partition % 16, count(*), max(received_at)
    FROM new_rows GROUP BY 2, 4 ORDER BY 2, 4
    ON CONFLICT (kind, model_name, site, shard) DO UPDATE
    SET events = c.events + excluded.events,
        newest_received_at = greatest(c.newest_received_at, excluded.newest_received_at);

    INSERT INTO interaction_counts AS c (model_name, action, shard, events)
    SELECT model_name, action, kafka_partition % 16, count(*)
    FROM new_rows GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (model_name, action, shard) DO UPDATE SET events = c.events + excluded.events;

    PERFORM radwatch_observe(array_agg('time_to_read'::text), array_agg(model_name),
                             array_agg(received_at), array_agg((kafka_partition % 16)::smallint),
                             array_agg(time_to_read_s))
    FROM new_rows WHERE time_to_read_s IS NOT NULL
    HAVING count(*) > 0;
    RETURN NULL;
END;
$$;

CREATE TRIGGER interactions_count AFTER INSERT ON interactions
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION radwatch_count_interactions();

-- `radwatch_rebuild_counters` (0012) truncates ingest_counts and the histograms: the
-- interaction counters are rebuilt after it, by the same name, so
-- monitor.store.counters.rebuild keeps working unchanged.
ALTER FUNCTION radwatch_rebuild_counters() RENAME TO radwatch_rebuild_counters_0012;

CREATE FUNCTION radwatch_rebuild_counters() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE interactions IN SHARE MODE;
    PERFORM radwatch_rebuild_counters_0012();
    TRUNCATE interaction_counts;
    INSERT INTO ingest_counts (kind, model_name, site, shard, events, newest_received_at)
    SELECT 'interaction', model_name, '', kafka_partition % 16, count(*), max(received_at)
    FROM interactions GROUP BY 2, 4;
    INSERT INTO interaction_counts (model_name, action, shard, events)
    SELECT model_name, action, kafka_partition % 16, count(*) FROM interactions GROUP BY 1, 2, 3;
    -- One call per model keeps each array small (the histogram is per model anyway).
    PERFORM radwatch_observe(array_agg('time_to_read'::text), array_agg(model_name),
                             array_agg(received_at), array_agg((kafka_partition % 16)::smallint),
                             array_agg(time_to_read_s))
    FROM interactions WHERE time_to_read_s IS NOT NULL GROUP BY model_name;
END;
$$;
