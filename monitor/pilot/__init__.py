"""The processes radwatch runs as a whole: `radwatch run` (the pilot deployment), `radwatch
demo` (the whole flow on a synthetic hospital) and the HTTP side they share (serving)."""
