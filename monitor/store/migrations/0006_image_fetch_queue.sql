-- Studies whose image could not be fetched because the PACS was down (issue 13): the event
-- itself is stored; its image waits here for `radwatch embed --parked` (or any backfill
-- window covering it), which reads the URI from image_locators (sealed) and deletes the
-- row once the image is embedded. No PHI: image_ref is a pseudonym, reason a code.
CREATE TABLE image_fetch_queue (
    image_ref        text PRIMARY KEY,
    event_id         text NOT NULL,
    model_name       text NOT NULL,
    reason           text NOT NULL,               -- image_timeout, image_http_error, …
    attempts         integer NOT NULL DEFAULT 1,
    parked_at        timestamptz NOT NULL DEFAULT now(),
    last_attempt_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX image_fetch_queue_model ON image_fetch_queue (model_name, parked_at);
