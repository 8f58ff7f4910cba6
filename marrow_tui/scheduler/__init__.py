"""The scheduler: runs coding agents on a heartbeat, the way marrow-core does.

`tasks` is the markdown task queue, `prompt` gathers context and builds the prompt, `runner`
executes one agent session. Nothing here imports Textual; import the submodules directly
(this package file stays empty so that importing it costs nothing).
"""
