"""Watching the report labeler (review queue, agreement) and the AI-vs-report discrepancy signal."""
