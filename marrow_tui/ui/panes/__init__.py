"""One module per pane: its table, its actions and its border hints."""
