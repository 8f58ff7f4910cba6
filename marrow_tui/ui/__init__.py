"""The console: a Textual app over the runtime. The only package that imports Textual."""
