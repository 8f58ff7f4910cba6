"""A session's transcript in the console: read lazily, drawn with the line API."""
