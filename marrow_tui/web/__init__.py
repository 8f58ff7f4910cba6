"""`marrow-tui web`: the console in a browser. textual-serve runs one attached console process
per browser tab; this package puts the operator token's login in front of it (server.py).

It never imports the runtime, the hub server or Textual: the console it serves is another
process (`marrow-tui attach`), which talks to the runtime over the wire like any other console.
"""
