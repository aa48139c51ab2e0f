-- Ingest counters (issue 19): what /metrics serves about ingest, kept in the same transaction
-- as the rows they count, so a scrape reads a few hundred counter rows instead of scanning the
-- event tables (tens of millions of rows at a large site), and every `radwatch metrics`
-- process serves the same numbers whichever worker stored the events.
--
-- Kept by AFTER INSERT statement triggers with transition tables (PostgreSQL ≥ 10): the
-- transition table holds only the rows the statement really inserted, so an
-- `INSERT … ON CONFLICT DO NOTHING` replay counts nothing twice, whichever code path (COPY,
-- INSERT, a test) writes the rows. radwatch never deletes events; counters count inserts.
--
-- Rows are sharded by kafka_partition % 16 (the consumer group gives each partition to one
-- worker, so concurrent workers rarely upsert the same row and never wait on each other's
-- counter rows until commit); readers sum over shards. Inputs are aggregated and upserted in
-- key order, so two transactions take the row locks in the same order.
-- No PHI: model, site, topic and reason names, counts and times; study pseudonyms only in
-- label_coverage_studies (as in inferences and labels themselves).

CREATE TABLE ingest_counts (
    kind               text NOT NULL CHECK (kind IN ('inference', 'label')),
    model_name         text NOT NULL,
    site               text NOT NULL DEFAULT '',  -- '' for labels and site-less inferences
    shard              smallint NOT NULL,
    events             bigint NOT NULL,
    newest_received_at timestamptz NOT NULL,
    PRIMARY KEY (kind, model_name, site, shard)
);

CREATE TABLE dead_letter_counts (
    kafka_topic        text NOT NULL,
    reason             text NOT NULL,
    shard              smallint NOT NULL,
    letters            bigint NOT NULL,
    newest_received_at timestamptz NOT NULL,
    PRIMARY KEY (kafka_topic, reason, shard)
);

-- Label coverage (share of stored inferences whose study has a label) without a join at
-- scrape time. One row per (model, study) holds how many inferences and labels it has; both
-- triggers upsert it, so an inference and a label of the same study written by two workers
-- at once serialise on that row and the second sees the first (no lost update). A study
-- whose first label arrives adds its inferences to labelled_inferences; an inference of an
-- already-labelled study adds itself; corrections and duplicate labels add nothing.
CREATE TABLE label_coverage_studies (
    model_name   text NOT NULL,
    study_pseudo text NOT NULL,
    inferences   bigint NOT NULL DEFAULT 0,
    labels       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (model_name, study_pseudo)
);

CREATE TABLE label_coverage_counts (
    model_name          text NOT NULL,
    shard               smallint NOT NULL,
    labelled_inferences bigint NOT NULL DEFAULT 0,
    labelled_studies    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (model_name, shard)
);

-- Fixed-bucket histograms (Prometheus classic histograms: `histogram_quantile` over the
-- cumulative `le` buckets). `bounds` are the finite upper bounds, ascending; a histogram's
-- `buckets` has one more element (the +Inf bucket) and is NOT cumulative. `neg` is -bounds
-- ascending, for width_bucket: #(bounds < v) = n - width_bucket(-v, neg), the index of the
-- first bucket whose bound is ≥ v (Prometheus counts v ≤ le, a value on a bound included).
CREATE TABLE histogram_bounds (
    series text PRIMARY KEY,
    bounds double precision[] NOT NULL,
    neg    double precision[] NOT NULL
);
INSERT INTO histogram_bounds (series, bounds, neg)
SELECT series, bounds, ARRAY(SELECT -b FROM unnest(bounds) b ORDER BY -b)
FROM (VALUES
    -- the deployed model's own latency, as reported in its events (seconds)
    ('model_latency', ARRAY[0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5, 10]::float8[]),
    -- occurred_at → stored, per inference (seconds)
    ('ingest_delay', ARRAY[0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 3600, 86400]::float8[]),
    -- a parsed batch → its last statement in the write transaction (seconds)
    ('ingest_batch', ARRAY[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]::float8[])
) AS v (series, bounds);

-- Per window (an hour of received_at): the latency history a report can read.
CREATE TABLE histogram_windows (
    series       text NOT NULL REFERENCES histogram_bounds (series),
    model_name   text NOT NULL,  -- '' for series that are not per model
    window_start timestamptz NOT NULL,
    shard        smallint NOT NULL,
    count        bigint NOT NULL,
    sum          double precision NOT NULL,
    buckets      bigint[] NOT NULL,
    PRIMARY KEY (series, model_name, window_start, shard)
);
-- All time: what the scrape reads (a handful of rows per model).
CREATE TABLE histogram_totals (
    series     text NOT NULL REFERENCES histogram_bounds (series),
    model_name text NOT NULL,
    shard      smallint NOT NULL,
    count      bigint NOT NULL,
    sum        double precision NOT NULL,
    buckets    bigint[] NOT NULL,
    PRIMARY KEY (series, model_name, shard)
);

-- Element-wise sum of two bucket arrays of the same length.
CREATE FUNCTION radwatch_add_buckets(a bigint[], b bigint[]) RETURNS bigint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_agg(x + y ORDER BY i) FROM unnest(a, b) WITH ORDINALITY AS u (x, y, i)
$$;

-- Bucket indexes and their counts (one group) → the group's bucket array of n + 1 elements.
CREATE FUNCTION radwatch_bucket_array(idx integer[], counts bigint[], n integer)
RETURNS bigint[] LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_agg(coalesce(c.total, 0) ORDER BY g)
    FROM generate_series(0, n) AS g
    LEFT JOIN (SELECT i, sum(k)::bigint AS total FROM unnest(idx, counts) AS u (i, k) GROUP BY i)
         AS c ON c.i = g
$$;

-- Observations (series, model, received time, shard, value) → histogram upserts: one per
-- window row and one per total row, whatever the number of observations. The triggers and
-- monitor.store.counters (the batch timer) both record through here.
CREATE FUNCTION radwatch_observe(p_series text[], p_model text[], p_at timestamptz[],
                                 p_shard smallint[], p_value float8[])
RETURNS void LANGUAGE sql AS $$
    WITH obs AS (
        SELECT o.series, o.model, date_trunc('hour', o.at) AS w, o.shard, o.v,
               array_length(h.bounds, 1) - width_bucket(-o.v, h.neg) AS i,
               array_length(h.bounds, 1) AS n
        FROM unnest(p_series, p_model, p_at, p_shard, p_value) AS o (series, model, at, shard, v)
        JOIN histogram_bounds h ON h.series = o.series
        WHERE o.v IS NOT NULL AND o.v >= 0 AND o.v <> 'NaN'::float8
    ), per_bucket AS (
        SELECT series, model, w, shard, i, n, count(*) AS c, sum(v) AS s
        FROM obs GROUP BY series, model, w, shard, i, n
    ), windows AS (
        INSERT INTO histogram_windows AS t (series, model_name, window_start, shard, count, sum,
                                            buckets)
        SELECT series, model, w, shard, sum(c), sum(s),
               radwatch_bucket_array(array_agg(i), array_agg(c), min(n))
        FROM per_bucket GROUP BY series, model, w, shard ORDER BY series, model, w, shard
        ON CONFLICT (series, model_name, window_start, shard) DO UPDATE
        SET count = t.count + excluded.count, sum = t.sum + excluded.sum,
            buckets = radwatch_add_buckets(t.buckets, excluded.buckets)
        RETURNING 1
    )
    INSERT INTO histogram_totals AS t (series, model_name, shard, count, sum, buckets)
    SELECT series, model, shard, sum(c), sum(s),
           radwatch_bucket_array(array_agg(i), array_agg(c), min(n))
    FROM per_bucket GROUP BY series, model, shard ORDER BY series, model, shard
    ON CONFLICT (series, model_name, shard) DO UPDATE
    SET count = t.count + excluded.count, sum = t.sum + excluded.sum,
        buckets = radwatch_add_buckets(t.buckets, excluded.buckets)
$$;

CREATE FUNCTION radwatch_count_inferences() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ingest_counts AS c (kind, model_name, site, shard, events, newest_received_at)
    SELECT 'inference', model_name, coalesce(site, ''), kafka_partition % 16, count(*),
           max(received_at)
    FROM new_rows GROUP BY 2, 3, 4 ORDER BY 2, 3, 4
    ON CONFLICT (kind, model_name, site, shard) DO UPDATE
    SET events = c.events + excluded.events,
        newest_received_at = greatest(c.newest_received_at, excluded.newest_received_at);

    WITH studies AS (
        SELECT model_name, study_pseudo, count(*) AS n, min(kafka_partition) % 16 AS shard
        FROM new_rows GROUP BY model_name, study_pseudo
    ), up AS (
        INSERT INTO label_coverage_studies AS s (model_name, study_pseudo, inferences)
        SELECT model_name, study_pseudo, n FROM studies ORDER BY model_name, study_pseudo
        ON CONFLICT (model_name, study_pseudo) DO UPDATE SET inferences = s.inferences + excluded.inferences
        RETURNING s.model_name, s.study_pseudo, s.labels
    )
    INSERT INTO label_coverage_counts AS c (model_name, shard, labelled_inferences)
    SELECT st.model_name, min(st.shard), sum(st.n)
    FROM up JOIN studies st USING (model_name, study_pseudo)
    WHERE up.labels > 0 GROUP BY st.model_name ORDER BY st.model_name
    ON CONFLICT (model_name, shard) DO UPDATE
    SET labelled_inferences = c.labelled_inferences + excluded.labelled_inferences;

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

CREATE FUNCTION radwatch_count_labels() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ingest_counts AS c (kind, model_name, site, shard, events, newest_received_at)
    SELECT 'label', model_name, '', kafka_partition % 16, count(*), max(received_at)
    FROM new_rows GROUP BY 2, 4 ORDER BY 2, 4
    ON CONFLICT (kind, model_name, site, shard) DO UPDATE
    SET events = c.events + excluded.events,
        newest_received_at = greatest(c.newest_received_at, excluded.newest_received_at);

    -- A study is newly labelled when all its labels are this statement's.
    WITH studies AS (
        SELECT model_name, study_pseudo, count(*) AS n, min(kafka_partition) % 16 AS shard
        FROM new_rows GROUP BY model_name, study_pseudo
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

CREATE FUNCTION radwatch_count_dead_letters() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO dead_letter_counts AS c (kafka_topic, reason, shard, letters, newest_received_at)
    SELECT kafka_topic, reason, kafka_partition % 16, count(*), max(received_at)
    FROM new_rows GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (kafka_topic, reason, shard) DO UPDATE
    SET letters = c.letters + excluded.letters,
        newest_received_at = greatest(c.newest_received_at, excluded.newest_received_at);
    RETURN NULL;
END;
$$;

CREATE TRIGGER inferences_count AFTER INSERT ON inferences
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION radwatch_count_inferences();
CREATE TRIGGER labels_count AFTER INSERT ON labels
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION radwatch_count_labels();
CREATE TRIGGER dead_letters_count AFTER INSERT ON dead_letters
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION radwatch_count_dead_letters();

-- Rebuild every counter from the event tables: the backfill of an upgraded database, and
-- `monitor.store.counters.rebuild` after rows were loaded with triggers off. Takes the
-- tables' SHARE locks, so no batch is written meanwhile (one full scan of each table).
CREATE FUNCTION radwatch_rebuild_counters() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE inferences, labels, dead_letters IN SHARE MODE;
    TRUNCATE ingest_counts, dead_letter_counts, label_coverage_studies, label_coverage_counts,
             histogram_windows, histogram_totals;
    INSERT INTO ingest_counts (kind, model_name, site, shard, events, newest_received_at)
    SELECT 'inference', model_name, coalesce(site, ''), kafka_partition % 16, count(*),
           max(received_at)
    FROM inferences GROUP BY 2, 3, 4;
    INSERT INTO ingest_counts (kind, model_name, site, shard, events, newest_received_at)
    SELECT 'label', model_name, '', kafka_partition % 16, count(*), max(received_at)
    FROM labels GROUP BY 2, 4;
    INSERT INTO dead_letter_counts (kafka_topic, reason, shard, letters, newest_received_at)
    SELECT kafka_topic, reason, kafka_partition % 16, count(*), max(received_at)
    FROM dead_letters GROUP BY 1, 2, 3;
    INSERT INTO label_coverage_studies (model_name, study_pseudo, inferences, labels)
    SELECT model_name, study_pseudo, sum(i), sum(l)
    FROM (SELECT model_name, study_pseudo, count(*) AS i, 0 AS l FROM inferences GROUP BY 1, 2
          UNION ALL
          SELECT model_name, study_pseudo, 0, count(*) FROM labels GROUP BY 1, 2) AS s
    GROUP BY 1, 2;
    INSERT INTO label_coverage_counts (model_name, shard, labelled_inferences, labelled_studies)
    SELECT model_name, 0, sum(inferences), count(*)
    FROM label_coverage_studies WHERE labels > 0 GROUP BY model_name;
    -- The histograms set-based (radwatch_observe takes arrays: right for a batch, not for
    -- every stored inference at once); the same bucketing as radwatch_observe.
    WITH obs AS (
        SELECT o.series, o.model, date_trunc('hour', o.at) AS w, o.shard, o.v,
               array_length(h.bounds, 1) - width_bucket(-o.v, h.neg) AS i,
               array_length(h.bounds, 1) AS n
        FROM (SELECT 'model_latency' AS series, model_name AS model, received_at AS at,
                     (kafka_partition % 16)::smallint AS shard, latency_ms / 1000.0 AS v
              FROM inferences WHERE latency_ms >= 0 AND latency_ms <> 'NaN'::float8
              UNION ALL
              SELECT 'ingest_delay', model_name, received_at, (kafka_partition % 16)::smallint,
                     greatest(0, extract(epoch FROM received_at - occurred_at))::float8
              FROM inferences) AS o
        JOIN histogram_bounds h ON h.series = o.series
    ), per_bucket AS (
        SELECT series, model, w, shard, i, n, count(*) AS c, sum(v) AS s
        FROM obs GROUP BY series, model, w, shard, i, n
    ), windows AS (
        INSERT INTO histogram_windows (series, model_name, window_start, shard, count, sum,
                                       buckets)
        SELECT series, model, w, shard, sum(c), sum(s),
               radwatch_bucket_array(array_agg(i), array_agg(c), min(n))
        FROM per_bucket GROUP BY series, model, w, shard
        RETURNING 1
    )
    INSERT INTO histogram_totals (series, model_name, shard, count, sum, buckets)
    SELECT series, model, shard, sum(c), sum(s),
           radwatch_bucket_array(array_agg(i), array_agg(c), min(n))
    FROM per_bucket GROUP BY series, model, shard;
END;
$$;

SELECT radwatch_rebuild_counters();
