"""The post-market monitoring plan as code (issue 16): the file, its approved versions, what it
cannot see (detectability), its stop rules and its rendering. Read by detection and incidents."""
